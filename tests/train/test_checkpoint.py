"""Checkpointer: keep-N, exact restore (sharded), data-iterator position, config JSON."""

import json

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from ga_jax.parallel.mesh import make_mesh
from ga_jax.train.checkpoint import Checkpointer


def state_at(step):
    params = {"w": jnp.arange(16.0).reshape(8, 2) * step, "b": jnp.full((3,), float(step))}
    return {"params": params, "opt": optax.adam(1e-3).init(params), "step": jnp.asarray(step)}


def loader():
    return grain.DataLoader(
        data_source=list(range(100)),
        sampler=grain.samplers.IndexSampler(100, shuffle=True, seed=3, num_epochs=1),
        operations=[grain.transforms.Batch(4)],
        worker_count=0,
    )


def test_keep_n_restore_and_iterator(tmp_path):
    ckpt = Checkpointer(tmp_path / "checkpoints", max_to_keep=2)
    it = iter(loader())
    config = ml_collections.ConfigDict({"model": {"width": 8}, "seed": 1})
    for step in range(4):
        next(it)
        ckpt.save(step, state_at(step), data_iterator=it, config=config)
    ckpt.wait()
    assert ckpt.all_steps() == [2, 3] and ckpt.latest_step() == 3
    expected_next = next(it)

    mesh = make_mesh({"data": 4, "fsdp": 2})
    sharding = NamedSharding(mesh, PartitionSpec("data", None))
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(
            x.shape,
            x.dtype,
            sharding=sharding if x.ndim == 2 else NamedSharding(mesh, PartitionSpec()),
        ),
        state_at(0),
    )
    fresh = iter(loader())
    restored = Checkpointer(tmp_path / "checkpoints").restore(None, abstract, data_iterator=fresh)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state_at(3)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert restored["params"]["w"].sharding == sharding
    np.testing.assert_array_equal(next(fresh), expected_next)
    saved_config = json.loads((tmp_path / "checkpoints" / "3" / "config" / "metadata").read_text())
    assert saved_config["model"]["width"] == 8
