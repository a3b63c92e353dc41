"""Meshes from config and logical shardings on the 8 simulated CPU devices."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, PartitionSpec

from ga_jax.parallel.mesh import batch_sharding, logical_shardings, make_mesh, resolve_mesh_shape


def test_resolve_mesh_shape():
    assert resolve_mesh_shape({"data": -1, "fsdp": 2, "tensor": 1}, 8) == {
        "data": 4,
        "fsdp": 2,
        "tensor": 1,
    }
    with pytest.raises(ValueError, match="at most one axis may be -1"):
        resolve_mesh_shape({"data": -1, "fsdp": -1}, 8)
    with pytest.raises(ValueError, match="needs 6 devices, found 8"):
        resolve_mesh_shape({"data": 3, "fsdp": 2}, 8)
    with pytest.raises(ValueError, match="not a multiple of 3"):
        resolve_mesh_shape({"data": -1, "fsdp": 3}, 8)


class Mlp(nn.Module):
    @nn.compact
    def __call__(self, x):
        init = nn.with_logical_partitioning(nn.initializers.normal(), ("embed", "mlp"))
        w = self.param("w", init, (16, 6))
        b = self.param("b", nn.initializers.zeros, (6,))  # no logical names: replicated
        return x @ w + b


def test_logical_shardings_and_batch():
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert mesh.axis_types == (AxisType.Auto,) * 3
    model = Mlp()
    abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((8, 16)))
    shardings = logical_shardings(abstract, mesh)
    # 'embed' -> fsdp (16 % 2 == 0), 'mlp' -> tensor (6 % 2 == 0).
    assert shardings["params"]["w"].spec == PartitionSpec("fsdp", "tensor")
    assert shardings["params"]["b"].spec == PartitionSpec(None)
    params = jax.jit(model.init, out_shardings=shardings)(jax.random.key(0), jnp.zeros((8, 16)))
    w = nn.unbox(params)["params"]["w"]
    assert w.sharding.spec == PartitionSpec("fsdp", "tensor")
    assert {s.data.shape for s in w.addressable_shards} == {(8, 3)}
    # A dimension the mesh axes do not divide (6 over tensor=4) stays unsharded.
    odd = logical_shardings(
        jax.eval_shape(Mlp().init, jax.random.key(0), jnp.zeros((1, 16))),
        make_mesh({"data": 1, "fsdp": 2, "tensor": 4}),
    )
    assert odd["params"]["w"].spec == PartitionSpec("fsdp", None)
    x = jax.device_put(np.ones((8, 16), np.float32), batch_sharding(mesh))
    assert x.sharding.spec == PartitionSpec(("data", "fsdp"))
