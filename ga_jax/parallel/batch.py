"""Host batches -> global jax.Arrays split over the mesh's batch axes (one per process)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["to_global_batch"]


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
