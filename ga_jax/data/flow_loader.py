"""The flow stages' input pipeline: batches of latents read from a latent dataset
(ga_jax/data/latents.py), through grain (deterministic, checkpointable, sharded by process).

A record is one object; each time it is read, one of its K encodings is chosen (and, when the
dataset stores conditioning views and `use_images` is set, one view), from a seed derived
from (config.seed, epoch position): the same config reads the same batches. Fields of a
batch (leading dim B = batch_size / shard_count):

    xyz      float32 [B, P, 3]   the encoding's FPS points (stage 1's data, stage 2's input)
    h        float32 [B, P, C]   its posterior sample ('sample') or mean ('mean'), per
                                 config.latent_field (stage 2's data)
    caption  str     [B]         the object's caption (text conditioners tokenise it)
    image    uint8   [B, S, S, 3]  one conditioning view (with use_images)

`root` may name several latent datasets separated by commas (e.g. the VAE's training objects
and a larger set encoded for the flows); they are read as one, in the order given, and must
agree on the point count and latent width. Bad records raise LatentFormatError naming the
file (the reader's checks).
"""

from __future__ import annotations

from typing import Any

import grain
import jax
import numpy as np

from ga_jax.data.latents import LatentDataset, LatentFormatError
from ga_jax.data.process_shards import process_block

LATENT_FIELDS = ("sample", "mean")


def open_latent_datasets(root: str) -> list[LatentDataset]:
    """The latent datasets of a comma-separated `root` (module docstring)."""
    roots = [r.strip() for r in str(root).split(",") if r.strip()]
    if not roots:
        raise ValueError(
            f"data.root: expected one or more latent dataset directories, got {root!r}"
        )
    datasets = [LatentDataset(r) for r in roots]
    first = datasets[0]
    for ds in datasets[1:]:
        if (ds.num_points, ds.latent_dim) != (first.num_points, first.latent_dim):
            raise LatentFormatError(
                f"{ds.root}: {ds.num_points} points x {ds.latent_dim} channels, but "
                f"{first.root} has {first.num_points} x {first.latent_dim}; data.root's "
                "datasets must match"
            )
    return datasets


class _Concatenated:
    """Several latent datasets read as one grain source."""

    def __init__(self, datasets: list[LatentDataset]):
        self.datasets = datasets
        self.offsets = np.cumsum([0] + [len(d) for d in datasets])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> dict[str, Any]:
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.datasets[k][int(i - self.offsets[k])]


def _check(config: Any) -> None:
    if config.latent_field not in LATENT_FIELDS:
        raise ValueError(
            f"data.latent_field: expected one of {LATENT_FIELDS}, got {config.latent_field!r}"
        )
    if not isinstance(config.batch_size, int) or config.batch_size < 1:
        raise ValueError(f"data.batch_size: expected an int >= 1, got {config.batch_size!r}")


class _PickEncoding(grain.transforms.RandomMap):
    """One encoding (and view) of an object, chosen by the per-record rng."""

    def __init__(self, latent_field: str, use_images: bool):
        self.latent_field, self.use_images = latent_field, use_images

    def random_map(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        k = int(rng.integers(record["xyz"].shape[0]))
        out = {
            "xyz": record["xyz"][k].astype(np.float32),
            "h": record[self.latent_field][k].astype(np.float32),
            "caption": np.asarray(record["caption"]),
        }
        if self.use_images:
            if "cond_images" not in record:
                raise ValueError(
                    f"data.use_images: object {record['instance_id']!r} has no cond_images "
                    "(extract the latents with conditioning views)"
                )
            views = record["cond_images"]
            out["image"] = views[int(rng.integers(views.shape[0]))]
        return out


def make_flow_loader(
    config: Any, *, shard_index: int | None = None, shard_count: int | None = None
):
    """An iterator over this shard's batches (fields in the module docstring), with
    get_state / set_state. config fields: root, batch_size (global), seed, shuffle,
    num_epochs (None = forever), latent_field, use_images."""
    _check(config)
    shard_index = jax.process_index() if shard_index is None else int(shard_index)
    shard_count = jax.process_count() if shard_count is None else int(shard_count)
    if config.batch_size % shard_count:
        raise ValueError(
            f"data.batch_size: the global batch {config.batch_size} must split evenly over "
            f"{shard_count} processes"
        )
    datasets = open_latent_datasets(config.root)
    source = datasets[0] if len(datasets) == 1 else _Concatenated(datasets)
    if len(source) < shard_count:
        raise ValueError(f"{config.root}: {len(source)} objects for {shard_count} processes")
    ds = grain.MapDataset.source(source)
    if config.shuffle:
        ds = ds.shuffle(seed=config.seed)
    ds = ds.repeat(config.num_epochs)
    ds = ds.random_map(_PickEncoding(config.latent_field, config.use_images), seed=config.seed + 1)
    # Each process loads its block of every global batch: the same batches for any count.
    ds = process_block(ds, config.batch_size, shard_index, shard_count)
    ds = ds.batch(config.batch_size // shard_count, drop_remainder=True)
    return iter(ds.to_iter_dataset())
