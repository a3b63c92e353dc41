"""Each process's part of every global batch, so that a run's batches do not depend on how many
processes load them.

A grain stream sharded by `ds[index::count]` hands process p the records p, p + P, ... : the
global batch (the processes' batches concatenated in process order, parallel/batch.py) is then
a permutation of the one a single process would load, and everything drawn per sample inside
the step (posterior noise, flow times) lands on other samples. `process_block` gives process p
the p-th contiguous block of each global batch instead: the global batch is the same records in
the same order for any process count, which is what lets a 2-process run reproduce a 1-process
run step for step (tests/parallel/test_multiprocess.py). `process_range` splits a job that is
not batched (samples, objects to measure) the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grain

__all__ = ["process_block", "process_range"]


def process_range(total: int, index: int, count: int) -> range:
    """The items of a job of `total` (samples to generate, objects to measure) that process
    `index` of `count` takes: a contiguous block, the first total % count blocks one longer,
    so that the blocks in process order are 0 .. total - 1. Empty when total < count."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"process index / count: expected 0 <= index < count, got {index}/{count}")
    if total < 0:
        raise ValueError(f"total: expected >= 0 items, got {total}")
    size, extra = divmod(total, count)
    start = index * size + min(index, extra)
    return range(start, start + size + (index < extra))


def process_block(
    ds: grain.MapDataset, global_batch: int, index: int, count: int
) -> grain.MapDataset:
    """ds's elements that process `index` of `count` loads: of every `global_batch` consecutive
    elements, the `index`-th of `count` equal blocks. The identity when count == 1."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"process index / count: expected 0 <= index < count, got {index}/{count}")
    if global_batch % count:
        raise ValueError(
            f"batch_size: the global batch {global_batch} must split evenly over {count} processes"
        )
    if count == 1:
        return ds
    return _ProcessBlock(ds, global_batch, index, count)


class _ProcessBlock(grain.MapDataset):
    """Element m of this process -> element (m // b) * B + index * b + m % b of the parent,
    with B the global batch and b = B / count (the local batch)."""

    _MUTATES_ELEMENT_SPEC = False

    def __init__(self, parent: grain.MapDataset, global_batch: int, index: int, count: int):
        super().__init__(parent)
        self._global, self._local, self._index = global_batch, global_batch // count, index
        # Only whole global batches: a trailing partial one would split unevenly.
        self._length = (len(parent) // global_batch) * self._local

    def __len__(self) -> int:
        return self._length

    def _parent_index(self, index: int) -> int:
        batch, offset = divmod(index, self._local)
        return batch * self._global + self._index * self._local + offset

    def __getitem__(self, index: Any):
        if isinstance(index, slice):
            return self.slice(index)
        with self._stats.record_self_time():
            parent_index = self._parent_index(index)
        return self._parent[parent_index]

    def _getitems(self, indices: Sequence[int]):
        with self._stats.record_self_time(num_elements=len(indices)):
            parent_indices = [self._parent_index(i) for i in indices]
        return self._parent._getitems(parent_indices)  # noqa: SLF001 - grain's batched read

    def __str__(self) -> str:
        return (
            f"ProcessBlock(global_batch={self._global}, local={self._local}, index={self._index})"
        )
