"""Device meshes and logical-axis shardings (DESIGN.md section 8).

Model code names array axes logically ('batch', 'embed', 'mlp', 'heads', 'layers', ...);
a config maps those names to mesh axes ('data', 'fsdp', 'tensor'). Meshes are built with
AxisType.Auto: jax.make_mesh defaults to Explicit axes, under which Linen's logical
constraints fail.

Mesh config (ml_collections, under `config.mesh`):
    shape: dict axis name -> size, one entry may be -1 = "all remaining devices",
           e.g. {"data": -1, "fsdp": 1, "tensor": 1}
    num_devices: -1 = every device, N = the first N (e.g. 1 for a single-device run)
    rules: list of (logical name, mesh axis | list of mesh axes | None)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DEFAULT_RULES",
    "batch_axes",
    "batch_sharding",
    "context_batch_axes",
    "logical_shardings",
    "make_mesh",
    "resolve_mesh_shape",
    "rules_context",
    "sharded_abstract",
]

# Parameters shard over 'fsdp' along their embedding axis and over 'tensor' along their
# wide (mlp / heads) axis; activations' batch axis over ('data', 'fsdp').
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("length", None),
    ("layers", None),
    # Convolution kernels [kh, kw, in, out] like dense ones: input channels over 'fsdp' (left
    # replicated, the VAE encoder's convolutions kept its per-device state well above 1/N on an
    # N-way fsdp mesh: docs/scaling.md), output channels over 'tensor'.
    ("conv_in", "fsdp"),
    ("conv_out", "tensor"),
    # Small axes, replicated: norm scales, per-index tokens, the 10-d latent MLPs.
    ("norm", None),
    ("tokens", None),
    ("latent", None),
)


def resolve_mesh_shape(shape: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Replace one -1 by the devices left over; check the product equals num_devices."""
    sizes = dict(shape)
    free = [name for name, size in sizes.items() if size == -1]
    if len(free) > 1:
        raise ValueError(f"mesh.shape: at most one axis may be -1, found {free} in {sizes}")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if any(size == 0 or size < -1 for size in sizes.values()):
        raise ValueError(f"mesh.shape: sizes must be positive or -1, found {sizes}")
    if free:
        if num_devices % fixed:
            raise ValueError(
                f"mesh.shape: {sizes} cannot use {num_devices} devices ({num_devices} is not a "
                f"multiple of {fixed})"
            )
        sizes[free[0]] = num_devices // fixed
    if math.prod(sizes.values()) != num_devices:
        raise ValueError(
            f"mesh.shape: {sizes} needs {math.prod(sizes.values())} devices, found {num_devices}"
        )
    return sizes


def make_mesh(
    shape: Mapping[str, int],
    devices: Sequence[jax.Device] | None = None,
    num_devices: int = -1,
) -> Mesh:
    """A Mesh with Auto axis types over `devices` (default: all; or the first `num_devices`
    of them when that is > 0) with the given axis sizes."""
    devices = list(devices if devices is not None else jax.devices())
    if num_devices > 0:
        if num_devices > len(devices):
            raise ValueError(f"mesh.num_devices: {num_devices} > the {len(devices)} devices")
        devices = devices[:num_devices]
    sizes = resolve_mesh_shape(shape, len(devices))
    names = tuple(sizes)
    return jax.make_mesh(
        tuple(sizes.values()),
        names,
        axis_types=(AxisType.Auto,) * len(names),
        devices=devices,
    )


def _rules(rules: Sequence[Sequence[Any]] | None) -> tuple[tuple[str, Any], ...]:
    if rules is None:
        return DEFAULT_RULES
    return tuple((name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in rules)


def logical_shardings(abstract_tree: Any, mesh: Mesh, rules=None) -> Any:
    """NamedShardings for a tree whose leaves may be nn.LogicallyPartitioned boxes.

    Leaves without logical names are replicated. Axes whose mesh size does not divide the
    array dimension are left unsharded (small configs on 8 devices), so every config runs on
    every mesh.
    """
    rules = _rules(rules)
    specs = nn.get_partition_spec(abstract_tree)
    # Box values read directly: nn.unbox would add sharding constraints inside a mesh context.
    shapes = jax.tree.map(
        lambda x: x.value if isinstance(x, nn.Partitioned) else x,
        abstract_tree,
        is_leaf=lambda x: isinstance(x, nn.Partitioned),
    )

    def to_sharding(spec, leaf):
        if not isinstance(spec, PartitionSpec):
            spec = PartitionSpec()
        mesh_spec = nn.logical_to_mesh_axes(spec, rules)
        fixed = []
        for dim, axes in zip(np.shape(leaf), tuple(mesh_spec) + (None,) * np.ndim(leaf)):
            names = (axes,) if isinstance(axes, str) else tuple(axes or ())
            if any(n not in mesh.shape for n in names):
                raise ValueError(
                    f"mesh.rules: a rule maps to mesh axes {names}, but the mesh has axes "
                    f"{tuple(mesh.shape)}; give every axis the rules use (size 1 is fine)"
                )
            size = math.prod(mesh.shape[n] for n in names)
            fixed.append(axes if names and dim % size == 0 else None)
        return NamedSharding(mesh, PartitionSpec(*fixed))

    return jax.tree.map(to_sharding, specs, shapes, is_leaf=lambda x: isinstance(x, PartitionSpec))


def sharded_abstract(abstract_tree: Any, mesh: Mesh, rules=None) -> Any:
    """The unboxed tree of jax.ShapeDtypeStructs carrying logical_shardings' shardings: a
    restore target (abstract_tree: jax.eval_shape output, leaves possibly boxed)."""
    shardings = logical_shardings(abstract_tree, mesh, rules)
    unboxed = jax.tree.map(
        lambda x: x.value if isinstance(x, nn.Partitioned) else x,
        abstract_tree,
        is_leaf=lambda x: isinstance(x, nn.Partitioned),
    )
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), unboxed, shardings
    )


def batch_sharding(mesh: Mesh, rules=None) -> NamedSharding:
    """Sharding of a batch's leading axis: the mesh axes that 'batch' maps to."""
    axes = dict(_rules(rules)).get("batch")
    return NamedSharding(mesh, PartitionSpec(axes))


def batch_axes(mesh: Mesh, rules=None) -> tuple[str, ...]:
    """The mesh axes a batch's leading axis is split over (those 'batch' maps to)."""
    spec = batch_sharding(mesh, rules).spec[0]
    return (spec,) if isinstance(spec, str) else tuple(spec or ())


def rules_context(mesh: Mesh, rules=None) -> contextlib.ExitStack:
    """The mesh and the logical axis rules, active while tracing: what the models' activation
    constraints (nn.with_logical_constraint) need. Use as `with rules_context(mesh, rules):`."""
    stack = contextlib.ExitStack()
    stack.enter_context(jax.set_mesh(mesh))
    stack.enter_context(nn.logical_axis_rules(_rules(rules)))
    return stack


def context_batch_axes() -> tuple[str, ...]:
    """The mesh axes a batch's leading axis is split over under the active mesh and logical
    rules (rules_context), restricted to axes of size > 1; () outside a mesh context."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return ()
    spec = nn.logical_to_mesh_axes(("batch",))[0]
    names = (spec,) if isinstance(spec, str) else tuple(spec or ())
    return tuple(n for n in names if n in mesh.shape and mesh.shape[n] > 1)
