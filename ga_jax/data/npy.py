"""Reading .npy / .npz arrays from several threads.

numpy parses every array's header with ast.literal_eval, and CPython 3.11 can fail that
parse when threads run it at the same time ("SystemError: AST constructor recursion depth
mismatch", python/cpython gh-106905). Grain's prefetch threads do exactly that, and a flow
training run died of it. Every reader of the data layer loads through `load_arrays`, which
reads a whole file under one lock (numpy offers no header-only parse to lock alone): reads of
one process are serialised, which costs little beside a train step for these small records.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

__all__ = ["load_arrays"]

_HEADER_LOCK = threading.Lock()


def load_arrays(path: str | Path) -> dict[str, np.ndarray] | np.ndarray:
    """The array of a .npy file, or {key: array} of every array in a .npz archive, read fully
    under the lock. Raises what np.load raises (callers name the file)."""
    with _HEADER_LOCK:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return {k: loaded[k] for k in loaded.files}
