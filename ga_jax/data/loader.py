"""The VAE input pipeline on grain: shuffled, sharded, batched, checkpointable (DESIGN.md 1, 8).

    it = make_vae_loader(config.data)     # shard = this process by default
    batch = next(it)                      # dict of numpy arrays, leading dim B / shards
    batch = to_global_batch(VaeBatch.from_sample(batch), mesh, axes)  # ga_jax.parallel.batch
    state = it.get_state()                # JSON-able; grain.checkpoint.CheckpointSave(it)

Pipeline (grain dataset API), with N = len(source) records:

    MapDataset.source(VaeRecordSource)          record i = chunk i // 2, half i % 2
      .shuffle(seed_a)                          global order, reshuffled every epoch
      .repeat(num_epochs)                       None = infinite
      .random_map(VaeSampleTransform, seed_b)   per-element RNG from (seed_b, position)
      process_block(batch_size, index, count)   this process's block of each global batch
      .to_iter_dataset(read threads)
      .mp_prefetch(worker_count)                (skipped when worker_count == 0)
      -> VaeBatchIterator                       drops bad records, stacks batches

seed_a and seed_b derive from config.seed. The RNG of an element depends on its position in
the global (repeated, shuffled) stream, so different shards and different epochs get
independent augmentations, and one seed fixes every batch whatever the worker count (grain
interleaves the workers' slices in a fixed order). Process p loads the p-th contiguous block
of each global batch (ga_jax/data/process_shards.py), so the global batch assembled from the
processes' blocks is the same records in the same order for any process count, and every
process reads the same number of batches. A bad record skipped in one process shifts only
that process's blocks.

Bad input (config.on_error): 'fail' raises the GBufferError that names the file (from a
worker too: grain re-raises it here). 'skip' turns the record into a BadRecord in the
transform; VaeBatchIterator drops it, logs a warning with the record index, chunk path and
error message, and counts it. The count is `VaeBatchIterator.num_skipped` (total for this
process, part of the checkpointed state) and each batch carries `num_skipped` int32 [B]: the
bad records dropped just before each sample, so summing it over batches (and processes)
gives the total so far, bar any dropped after the last batch.

Batching happens in the main process, after the filter, so a batch never contains a bad
record and its composition does not depend on the worker count; the remainder of a finite
run that does not fill a batch is dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from ga_jax.data.gbuffer import GBufferError
from ga_jax.data.process_shards import process_block
from ga_jax.data.source import VaeRecordSource, chunk_view_count
from ga_jax.data.transforms import BadRecord, SampleOptions, VaeSampleTransform

__all__ = [
    "VaeBatchIterator",
    "make_source",
    "make_vae_dataset",
    "make_vae_loader",
]

logger = logging.getLogger(__name__)


def make_source(config: Any) -> VaeRecordSource:
    """The record source described by a data config (configs/common.py data_config())."""
    return VaeRecordSource(
        config.gbuffer_root,
        config.fps_root,
        dataset_json=config.dataset_json,
        classes=config.classes,
        max_chunks=config.max_chunks,
        fps_file=config.fps_file,
    )


def make_vae_dataset(
    config: Any,
    *,
    shard_index: int | None = None,
    shard_count: int | None = None,
    source: VaeRecordSource | None = None,
) -> grain.IterDataset:
    """grain IterDataset of this shard's batches (see the module docstring).

    shard_index / shard_count default to jax.process_index() / jax.process_count().
    config.batch_size is the global batch: each shard yields batch_size / shard_count samples
    per batch. Raises ValueError naming the config field for a bad value.
    """
    options = SampleOptions.from_config(config)
    shard_index = jax.process_index() if shard_index is None else int(shard_index)
    shard_count = jax.process_count() if shard_count is None else int(shard_count)
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ValueError(
            f"shard_index / shard_count: expected 0 <= shard_index < shard_count, got "
            f"{shard_index} / {shard_count}"
        )
    batch_size = _int_field(config, "batch_size", minimum=1)
    if batch_size % shard_count:
        raise ValueError(
            f"batch_size: the global batch {batch_size} must split evenly over "
            f"{shard_count} shards (processes)"
        )
    worker_count = _int_field(config, "worker_count", minimum=0)
    read_threads = _int_field(config, "read_threads", minimum=0)
    read_buffer_size = _int_field(config, "read_buffer_size", minimum=0)
    worker_buffer_size = _int_field(config, "worker_buffer_size", minimum=1)
    seed = _int_field(config, "seed", minimum=0)
    num_epochs = config.num_epochs
    if num_epochs is not None and (not isinstance(num_epochs, int) or num_epochs < 1):
        raise ValueError(
            f"num_epochs: expected None (infinite) or an integer >= 1, got {num_epochs!r}"
        )

    source = make_source(config) if source is None else source
    _check_views_per_half(source, options)

    shuffle_seed, map_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    ds = grain.MapDataset.source(source)
    if config.shuffle:
        ds = ds.shuffle(seed=shuffle_seed)
    ds = ds.repeat(num_epochs)
    ds = ds.random_map(VaeSampleTransform(options), seed=map_seed)
    # Each process loads its block of every global batch: the same batches for any count.
    ds = process_block(ds, batch_size, shard_index, shard_count)
    it = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=read_buffer_size)
    )
    if worker_count > 0:
        _ensure_absl_flags_parsed()
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=worker_count, per_worker_buffer_size=worker_buffer_size
            )
        )
    return _SkipAndBatch(it, batch_size // shard_count)


def make_vae_loader(
    config: Any,
    *,
    shard_index: int | None = None,
    shard_count: int | None = None,
    source: VaeRecordSource | None = None,
) -> VaeBatchIterator:
    """An iterator over this shard's batches (make_vae_dataset's, started).

    Each batch is a dict of numpy arrays with a leading batch dim B = batch_size /
    shard_count: the sample fields of ga_jax.data.transforms plus `num_skipped` int32 [B].
    Checkpoint it with get_state()/set_state() or grain.checkpoint.CheckpointSave(it); with
    worker_count > 0 call close() when done (grain's worker processes).
    """
    dataset = make_vae_dataset(
        config, shard_index=shard_index, shard_count=shard_count, source=source
    )
    return iter(dataset)


# --------------------------------------------------------------------------------------------
# Filtering bad records + batching, in the main process


class _SkipAndBatch(grain.IterDataset):
    """Drops BadRecords (logged, counted) and stacks batch_size samples per batch."""

    def __init__(self, parent: grain.IterDataset, batch_size: int):
        super().__init__(parent)
        self._batch_size = batch_size

    def __iter__(self) -> VaeBatchIterator:
        return VaeBatchIterator(self._parent.__iter__(), self._batch_size)

    def __str__(self) -> str:
        return f"SkipBadAndBatch(batch_size={self._batch_size})"


class VaeBatchIterator(grain.DatasetIterator):
    """Batches of the VAE pipeline; a grain DatasetIterator, so its state (a JSON-able dict:
    the upstream position and `num_skipped`) checkpoints with grain.checkpoint.

    Attributes:
      batch_size: samples per batch (this shard's).
      num_skipped: bad records dropped so far by this iterator (on_error='skip'); restored
        by set_state.
    """

    def __init__(self, parent: grain.DatasetIterator, batch_size: int):
        super().__init__(parent)
        self.batch_size = batch_size
        self.num_skipped = 0

    def __next__(self) -> dict[str, np.ndarray]:
        self._assert_not_closed()
        samples: list[dict[str, np.ndarray]] = []
        skipped_before: list[int] = []
        pending = 0
        while len(samples) < self.batch_size:
            element = next(self._parent)  # StopIteration ends the run (remainder dropped)
            if isinstance(element, BadRecord):
                self.num_skipped += 1
                pending += 1
                logger.warning(
                    "skipping bad record %d (chunk %s): %s",
                    element.record_index,
                    element.chunk_path,
                    element.message,
                )
                continue
            samples.append(element)
            skipped_before.append(pending)
            pending = 0
        batch = {key: np.stack([s[key] for s in samples]) for key in samples[0]}
        batch["num_skipped"] = np.asarray(skipped_before, np.int32)
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"parent": self._parent.get_state(), "num_skipped": self.num_skipped}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        self.num_skipped = int(state["num_skipped"])

    def __str__(self) -> str:
        return f"VaeBatchIterator(batch_size={self.batch_size})"


# --------------------------------------------------------------------------------------------
# Helpers


def _int_field(config: Any, name: str, minimum: int) -> int:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_views_per_half(source: VaeRecordSource, options: SampleOptions) -> None:
    """ValueError naming views_per_half when the data's chunks hold fewer than 2 halves.

    Looks at the image header of the first readable chunk among the first few (a broken
    chunk there is left to the on_error policy when it is read).
    """
    first_error = None
    for chunk in source.chunks[:8]:
        path = Path(source.gbuffer_root) / chunk
        try:
            views = chunk_view_count(path)
        except GBufferError as e:
            first_error = first_error or e
            continue
        if 2 * options.views_per_half > views:
            raise ValueError(
                f"views_per_half: {options.views_per_half} views per half need "
                f"{2 * options.views_per_half} views per chunk, but {path} has {views}"
            )
        return
    if first_error is not None and options.on_error == "fail":
        raise first_error


def _ensure_absl_flags_parsed() -> None:
    # grain's worker processes read an absl flag at start-up; outside absl.app.run (pytest,
    # notebooks, argparse scripts) nothing parsed the flags, which makes grain raise
    # UnparsedFlagAccessError. Accept the defaults in that case.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
