"""The latent dataset: what the VAE's extraction job writes and the flow models train on.

On-disk format (version 1), one directory:

    index.json               {"format": "ga-jax-latents", "version": 1,
                              "num_points": P, "latent_dim": C, "encodings": K,
                              "metadata": {...free-form: VAE config, checkpoint step...},
                              "objects": [{"instance_id": "Animals/0/10017",
                                           "caption": "...", "file": "objects/000000.npz"}]}
    objects/000000.npz       one uncompressed npz per object:
        xyz        float32 [K, P, 3]  the FPS points the VAE encoded (deterministic part of z)
        sample     float32 [K, P, C]  posterior samples h = mean + exp(logvar / 2) * eps
        mean       float32 [K, P, C]  posterior means
        logvar     float32 [K, P, C]  posterior log-variances (already clamped by the VAE)
        cond_images  uint8 [V, S, S, 3]  conditioning views (optional; DESIGN: 14 views,
                                          top/bottom dropped, rendered on white)
        cond_cameras float32 [V, 25]    their c.npy rows (optional, present with cond_images)

K encodings per object come from different FPS starts / view halves, so a flow model sees
several latents of each object. index.json also holds "stats": per latent field ("sample",
"mean") the per-channel mean and standard deviation over every object, encoding and point,
and the count of values per channel (pooled_stats combines datasets); the flow stages
standardise h with them (configs/flow/base.py, flow.standardise_features). index.json is
written last and atomically (write to a temporary name, then rename): a crashed extraction
leaves no index that points at missing files. Every problem raises LatentFormatError naming
the file and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ga_jax.data.npy import load_arrays

__all__ = [
    "FORMAT",
    "VERSION",
    "LatentDataset",
    "LatentFormatError",
    "LatentWriter",
    "pooled_stats",
]

FORMAT = "ga-jax-latents"
VERSION = 1
_LATENT_FIELDS = ("xyz", "sample", "mean", "logvar")
_STATS_FIELDS = ("sample", "mean")


class LatentFormatError(ValueError):
    """A latent dataset file is missing or does not match the documented format."""


def _check_record(arrays: Mapping[str, np.ndarray], num_points: int, latent_dim: int, where: str):
    for name in _LATENT_FIELDS:
        if name not in arrays:
            raise LatentFormatError(f"{where}: missing array '{name}' (expected {_LATENT_FIELDS})")
    encodings = arrays["xyz"].shape[0] if arrays["xyz"].ndim == 3 else -1
    expected = {
        "xyz": (encodings, num_points, 3),
        "sample": (encodings, num_points, latent_dim),
        "mean": (encodings, num_points, latent_dim),
        "logvar": (encodings, num_points, latent_dim),
    }
    for name, shape in expected.items():
        array = arrays[name]
        if array.shape != shape or encodings < 1:
            raise LatentFormatError(
                f"{where}: '{name}' expected shape [K, {num_points}, {shape[2]}] (K >= 1, the same "
                f"for every field), found {array.shape}"
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise LatentFormatError(f"{where}: '{name}' expected float32, found {array.dtype}")
        if not np.all(np.isfinite(array)):
            raise LatentFormatError(f"{where}: '{name}' expected finite values, found NaN/inf")
    has_images, has_cameras = "cond_images" in arrays, "cond_cameras" in arrays
    if has_images != has_cameras:
        raise LatentFormatError(f"{where}: 'cond_images' and 'cond_cameras' come together")
    if has_images:
        images, cameras = arrays["cond_images"], arrays["cond_cameras"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise LatentFormatError(
                f"{where}: 'cond_images' expected uint8 [V, S, S, 3], found {images.dtype} "
                f"{images.shape}"
            )
        if cameras.shape != (images.shape[0], 25) or not np.all(np.isfinite(cameras)):
            raise LatentFormatError(
                f"{where}: 'cond_cameras' expected finite [{images.shape[0]}, 25], found "
                f"{cameras.shape}"
            )


class LatentWriter:
    """Writes a latent dataset directory; call `add` per object, then `close` (or use `with`)."""

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        num_points: int,
        latent_dim: int,
        metadata: Mapping[str, Any] | None = None,
    ):
        self.root = Path(root)
        self.num_points, self.latent_dim = num_points, latent_dim
        self.metadata = dict(metadata or {})
        self.objects: list[dict[str, str]] = []
        self.encodings: int | None = None
        # Per-channel float64 sums of x and x^2 and the value count, per latent field.
        self._sums = {f: [0.0, 0.0, 0] for f in _STATS_FIELDS}
        (self.root / "objects").mkdir(parents=True, exist_ok=True)

    def add(
        self,
        instance_id: str,
        caption: str,
        *,
        xyz: np.ndarray,
        sample: np.ndarray,
        mean: np.ndarray,
        logvar: np.ndarray,
        cond_images: np.ndarray | None = None,
        cond_cameras: np.ndarray | None = None,
    ) -> None:
        """Add one object: xyz [K, P, 3], sample/mean/logvar [K, P, C] (see module doc)."""
        arrays = {
            "xyz": np.asarray(xyz, np.float32),
            "sample": np.asarray(sample, np.float32),
            "mean": np.asarray(mean, np.float32),
            "logvar": np.asarray(logvar, np.float32),
        }
        if cond_images is not None or cond_cameras is not None:
            arrays["cond_images"] = np.asarray(cond_images)
            arrays["cond_cameras"] = np.asarray(cond_cameras, np.float32)
        _check_record(arrays, self.num_points, self.latent_dim, f"object {instance_id!r}")
        if self.encodings is None:
            self.encodings = arrays["xyz"].shape[0]
        elif arrays["xyz"].shape[0] != self.encodings:
            raise LatentFormatError(
                f"object {instance_id!r}: expected {self.encodings} encodings like the objects "
                f"before it, found {arrays['xyz'].shape[0]}"
            )
        for field in _STATS_FIELDS:
            values = arrays[field].reshape(-1, self.latent_dim).astype(np.float64)
            sums = self._sums[field]
            sums[0] = sums[0] + values.sum(0)
            sums[1] = sums[1] + np.square(values).sum(0)
            sums[2] += values.shape[0]
        rel = f"objects/{len(self.objects):06d}.npz"
        np.savez(self.root / rel, **arrays)
        self.objects.append({"instance_id": instance_id, "caption": caption, "file": rel})

    def close(self) -> Path:
        """Write index.json atomically; returns its path."""
        index = {
            "format": FORMAT,
            "version": VERSION,
            "num_points": self.num_points,
            "latent_dim": self.latent_dim,
            "encodings": self.encodings or 0,
            "metadata": self.metadata,
            "stats": self._stats(),
            "objects": self.objects,
        }
        path = self.root / "index.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(index, indent=1))
        os.replace(tmp, path)
        return path

    def _stats(self) -> dict[str, Any]:
        stats = {}
        for field, (total, squares, count) in self._sums.items():
            if count == 0:
                continue
            mean = total / count
            std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
            stats[field] = {"mean": mean.tolist(), "std": std.tolist(), "count": count}
        return stats

    def __enter__(self) -> LatentWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()


class LatentDataset:
    """Random-access reader (a grain data source): item i is object i's arrays + caption."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        path = self.root / "index.json"
        try:
            index = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise LatentFormatError(
                f"{path}: missing (a latent dataset directory needs index.json; was the "
                "extraction job finished?)"
            ) from e
        except (OSError, json.JSONDecodeError) as e:
            raise LatentFormatError(f"{path}: unreadable JSON: {e}") from e
        if index.get("format") != FORMAT or index.get("version") != VERSION:
            raise LatentFormatError(
                f"{path}: expected format {FORMAT!r} version {VERSION}, found "
                f"{index.get('format')!r} version {index.get('version')}"
            )
        for field in ("num_points", "latent_dim", "encodings", "objects"):
            if field not in index:
                raise LatentFormatError(f"{path}: missing field '{field}'")
        self.num_points = int(index["num_points"])
        self.latent_dim = int(index["latent_dim"])
        self.encodings = int(index["encodings"])
        self.metadata = index.get("metadata", {})
        self.stats = index.get("stats", {})
        self.objects = index["objects"]

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, i: int) -> dict[str, Any]:
        entry = self.objects[i]
        path = self.root / entry["file"]
        try:
            arrays = load_arrays(path)
        except FileNotFoundError as e:
            raise LatentFormatError(f"{path}: missing (listed in index.json)") from e
        except (OSError, ValueError) as e:
            raise LatentFormatError(f"{path}: unreadable npz: {e}") from e
        _check_record(arrays, self.num_points, self.latent_dim, str(path))
        return {**arrays, "instance_id": entry["instance_id"], "caption": entry["caption"]}


def pooled_stats(datasets: list[LatentDataset], field: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean [C], std [C]) of a latent field over several datasets, pooled
    exactly from each one's index.json stats (module docstring)."""
    if field not in _STATS_FIELDS:
        raise ValueError(f"latent stats: expected a field in {_STATS_FIELDS}, got {field!r}")
    total = squares = 0.0
    count = 0
    for ds in datasets:
        entry = ds.stats.get(field)
        if entry is None:
            raise LatentFormatError(
                f"{ds.root / 'index.json'}: no stats for '{field}' (written by extraction "
                "since issue 17; re-run launch.extract_latents)"
            )
        mean, std, n = np.asarray(entry["mean"]), np.asarray(entry["std"]), int(entry["count"])
        if mean.shape != (ds.latent_dim,) or std.shape != (ds.latent_dim,):
            raise LatentFormatError(
                f"{ds.root / 'index.json'}: stats.{field}: expected mean and std of "
                f"{ds.latent_dim} channels, got {mean.shape} and {std.shape}"
            )
        total = total + mean * n
        squares = squares + (np.square(std) + np.square(mean)) * n
        count += n
    if count == 0:
        raise ValueError("latent stats: no datasets given")
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - mean**2, 0.0))
