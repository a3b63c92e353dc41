"""Host batches -> global jax.Arrays split over the mesh's batch axes (one per process), and
global arrays back to every host as whole numpy arrays."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["gather_host_batch", "to_global_batch", "to_host"]


def to_global_batch(host_batch: Any, mesh: Mesh, axis: str | tuple[str, ...] = "data") -> Any:
    """Assemble each process's batch into global jax.Arrays sharded over `axis` of `mesh`.

    host_batch: a pytree (dict, NamedTuple, ...) of this process's arrays [B_local, ...]. The
    global array is [B_local * (processes along axis), ...], its leading dim split over the
    mesh axis (or axes, e.g. ('data', 'fsdp')) and replicated over the others, built with
    jax.make_array_from_process_local_data. Raises ValueError naming the field when an array
    has no batch dim or the batch does not split over this process's devices.
    """
    axes = (axis,) if isinstance(axis, str) else tuple(axis)
    missing = [a for a in axes if a not in mesh.shape]
    if missing:
        raise ValueError(f"axis: {missing} not in the mesh axes {tuple(mesh.shape)}")
    sharding = NamedSharding(mesh, PartitionSpec(axes))
    # Shards of the batch dim held by this process's devices: distinct mesh coordinates
    # along `axes` among the addressable devices.
    positions = [mesh.axis_names.index(a) for a in axes]
    local_shards = len(
        {
            tuple(coords[p] for p in positions)
            for coords in np.ndindex(mesh.devices.shape)
            if mesh.devices[coords].process_index == jax.process_index()
        }
    )

    def to_global(path, value):
        value = np.asarray(value)
        if value.ndim < 1 or value.shape[0] % local_shards:
            raise ValueError(
                f"{jax.tree_util.keystr(path, simple=True, separator='.')}: expected a leading "
                f"batch dim divisible by the {local_shards} local shards of mesh axis {axes}, "
                f"got shape {value.shape}"
            )
        return jax.make_array_from_process_local_data(sharding, value)

    return jax.tree_util.tree_map_with_path(to_global, host_batch)


def to_host(tree: Any) -> Any:
    """Every leaf as a whole numpy array on every process.

    jax.device_get fails on an array that spans other processes' devices; a batch-sharded
    result (per-sample metrics, images) is then gathered from all processes, in the global
    array's order. Replicated arrays are read from a local copy without communication. Every
    process must call this with the same tree (the gather is a collective).
    """

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(jax.device_get(x))
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)


def gather_host_batch(host_batch: Any) -> Any:
    """The global batch on every process: each process's host arrays (the same shapes on every
    process) concatenated along the leading axis in process order, i.e. in the order of the
    global arrays to_global_batch builds from them. A collective when there are several
    processes; the batch itself with one."""
    if jax.process_count() == 1:
        return host_batch
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(host_batch, tiled=True))
