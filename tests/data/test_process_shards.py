"""Each process's part of a job (ga_jax/data/process_shards.py), against the split written out by
hand: the processes' parts, concatenated in process order, are the one-process job."""

from __future__ import annotations

import grain
import pytest

from ga_jax.data.process_shards import process_block, process_range


@pytest.mark.parametrize("count", [1, 2, 4])
def test_process_blocks_rebuild_each_global_batch(count):
    records, global_batch = 26, 8  # 3 whole global batches; the trailing 2 records are dropped
    ds = grain.MapDataset.range(records)
    parts = [list(process_block(ds, global_batch, i, count)) for i in range(count)]
    local = global_batch // count
    rebuilt = [
        record
        for batch in range(records // global_batch)
        for part in parts
        for record in part[batch * local : (batch + 1) * local]
    ]
    assert rebuilt == list(range(records // global_batch * global_batch))


def test_process_block_refuses_an_uneven_batch():
    with pytest.raises(ValueError, match="batch_size: the global batch 6"):
        process_block(grain.MapDataset.range(12), 6, 0, 4)
    with pytest.raises(ValueError, match="0 <= index < count"):
        process_block(grain.MapDataset.range(12), 6, 2, 2)


@pytest.mark.parametrize("total, count", [(7, 3), (8, 2), (2, 4), (0, 2), (5, 1)])
def test_process_ranges_cover_the_job_in_order(total, count):
    parts = [process_range(total, i, count) for i in range(count)]
    assert [i for part in parts for i in part] == list(range(total))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_process_range_refuses_bad_arguments():
    with pytest.raises(ValueError, match="0 <= index < count"):
        process_range(4, 3, 3)
    with pytest.raises(ValueError, match="total: expected >= 0"):
        process_range(-1, 0, 1)
