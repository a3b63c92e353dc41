"""Per-object feature cache of the metric jobs, so that an interrupted job resumes where it
stopped and a second run over the same objects computes nothing.

An entry is one object's features under one network: `<root>/<kind>/<key[:2]>/<key>.npz`, where
key = SHA-256 of (kind, the network weights' digest, the protocol fields the features depend
on, the object's digest). Anything that changes the features changes the key, so stale
entries are never read; they are only left behind. Entries are written to a temporary file
and renamed into place, so a job killed mid-write leaves no partial entry. The cache counts
what it served and what was computed, and the job reports the counts.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FeatureCache", "cache_key"]


def cache_key(kind: str, weights: str, protocol: dict[str, Any], digest: str) -> str:
    text = json.dumps(
        {"kind": kind, "weights": weights, "protocol": protocol, "object": digest},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureCache:
    """Per-object features on disk (module docstring); `counts[kind]` holds 'cached' (served
    from disk) and 'computed' (stored by `put`)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.npz"

    def get(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        """The stored arrays, or None when absent (a damaged entry counts as absent and is
        recomputed)."""
        path = self._path(kind, key)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError):
            return None
        self.counts[kind]["cached"] += 1
        return arrays

    def put(self, kind: str, key: str, arrays: dict[str, np.ndarray]) -> None:
        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.counts[kind]["computed"] += 1

    def summary(self) -> dict[str, dict[str, int]]:
        return {
            kind: {"computed": c["computed"], "cached": c["cached"]}
            for kind, c in sorted(self.counts.items())
        }
