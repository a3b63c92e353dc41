"""Ahead-of-time compile reports (ga_jax/train/compile_report.py): collectives counted from
HLO against programs whose communication is known, per-device state bytes against the
shardings, and a tiny model's train step compiled from shapes alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from configs.flow.tiny import get_config as tiny_flow_config
from ga_jax.data.flow_loader import make_flow_loader
from ga_jax.data.loader import make_vae_loader
from ga_jax.data.transforms import VaeBatch
from ga_jax.parallel.mesh import make_mesh
from ga_jax.train.compile_report import collective_bytes, compile_train_step, sharded_bytes
from ga_jax.train.tasks.flow import FlowTask
from tests.data.fake_vae_data import make_fake_dataset
from tests.train.test_flow_task import POINTS, write_latents
from tests.train.vae_task_setup import tiny_config as tiny_vae_config


def test_collectives_in_a_loop_count_once_per_trip():
    """A psum in a 5-trip loop and one all-gather after it, per device f32[128]."""
    mesh = make_mesh({"i": 8})

    def per_device(x):
        x = jax.lax.fori_loop(0, 5, lambda _, v: jax.lax.psum(v, "i") * 0.5, x)
        return jax.lax.all_gather(x, "i", tiled=True)

    fn = jax.jit(
        jax.shard_map(
            per_device,
            mesh=mesh,
            in_specs=PartitionSpec("i"),
            out_specs=PartitionSpec(),
            check_vma=False,
        )
    )
    x = jax.ShapeDtypeStruct(
        (8 * 128,), jnp.float32, sharding=NamedSharding(mesh, PartitionSpec("i"))
    )
    totals = collective_bytes(fn.lower(x).compile().as_text())
    assert totals["all-reduce"] == {"count": 5, "bytes": 5 * 128 * 4}
    assert totals["all-gather"] == {"count": 1, "bytes": 8 * 128 * 4}
    assert totals["reduce-scatter"]["count"] == totals["all-to-all"]["count"] == 0


def test_sharded_bytes_takes_each_devices_share():
    mesh = make_mesh({"data": 2, "fsdp": 4})
    tree = {
        "split": jax.ShapeDtypeStruct(
            (64, 32), jnp.float32, sharding=NamedSharding(mesh, PartitionSpec("fsdp", "data"))
        ),
        "replicated": jax.ShapeDtypeStruct(
            (10,), jnp.bfloat16, sharding=NamedSharding(mesh, PartitionSpec())
        ),
    }
    assert sharded_bytes(tree) == (64 * 32 * 4 + 20, 16 * 16 * 4 + 20)


def test_abstract_batches_match_the_loaders(tmp_path):
    gbuffer, fps, _ = make_fake_dataset(
        tmp_path / "vae", classes={"Spheres": 2}, chunks_per_object=1, views=4, size=32, points=256
    )
    c = tiny_vae_config((gbuffer, fps))
    loader = make_vae_loader(c.data)
    real = VaeBatch.from_sample(next(loader))
    loader.close()
    abstract = VaeBatch.abstract(c.data)
    assert [np.shape(x) for x in real] == [x.shape for x in abstract]

    flow = tiny_flow_config("2")
    flow.data.root = flow.eval_data.root = str(write_latents(tmp_path / "latents"))
    task = FlowTask(flow)
    real = task.device_batch(next(make_flow_loader(flow.data)))
    abstract = task.abstract_batch(POINTS)
    for key in ("xyz", "h"):
        assert real[key].shape == abstract[key].shape, key


def test_a_train_step_compiles_from_shapes_with_its_state_split_over_fsdp(tmp_path):
    c = tiny_flow_config("1")
    with c.unlocked():
        c.data.root = c.eval_data.root = str(tmp_path / "never_read")
        c.train.eval_every_steps = 0
    mesh = make_mesh({"data": 1, "fsdp": 8, "tensor": 1})
    compiled, report = compile_train_step(FlowTask(c), c, mesh, num_points=64)
    assert report.devices == 8 and report.params > 10_000
    # Adam: parameters + two moments; the tiny DiT's 32-wide axes split 8 ways, the few
    # small leaves that do not divide stay whole.
    assert report.state_total_bytes >= 3 * 4 * report.params
    assert report.state_total_bytes / report.state_device_bytes > 5
    assert report.flops > 0 and report.temp_bytes > 0
    # FSDP: parameters are gathered for the forward pass and gradients reduced.
    assert report.collectives["all-gather"]["count"] > 0
    assert (
        report.collectives["all-reduce"]["count"] + report.collectives["reduce-scatter"]["count"]
        > 0
    )
    assert "all-gather" in report.table()
