"""Metric logging: JSONL always, TensorBoard event files alongside, progress lines with ETA.

clu's metric writers import TensorFlow, which the project does not require; TensorBoard files
are written with tensorboardX instead (a dependency) and the JSONL file is the record tests
and scripts read: one JSON object per line, {"step": int, "time": float, name: value, ...}.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["MetricWriter", "Progress", "read_jsonl"]

log = logging.getLogger(__name__)


class MetricWriter:
    """Writes scalars to `workdir/metrics.jsonl` and (if tensorboardX imports) event files.

    active=False writes nothing: in a multi-process run only process 0's writer is active, so
    the files hold each step once.
    """

    def __init__(self, workdir: str | Path, *, tensorboard: bool = True, active: bool = True):
        self.workdir = Path(workdir)
        self._jsonl = None
        self._tb = None
        if not active:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.workdir / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:  # optional: JSONL is the record
                log.warning("tensorboardX not installed: writing metrics.jsonl only")
            else:
                self._tb = SummaryWriter(str(self.workdir / "tensorboard"))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        if self._jsonl is None:
            return
        values = {name: float(np.asarray(value)) for name, value in scalars.items()}
        record = {"step": int(step), "time": time.time(), **values}
        # NaN/inf are not JSON: write them as strings so the line stays parseable.
        safe = {
            k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
            for k, v in record.items()
        }
        self._jsonl.write(json.dumps(safe) + "\n")
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(name, value, int(step))

    def write_image(self, step: int, name: str, image: np.ndarray) -> None:
        """image [H, W, 3] float in [0, 1]."""
        if self._tb is not None:
            self._tb.add_image(name, np.clip(image, 0, 1), int(step), dataformats="HWC")

    def flush(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self.flush()
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl file (strings 'nan'/'inf' back to floats)."""
    records = []
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        records.append(
            {k: float(v) if v in ("nan", "inf", "-inf") else v for k, v in record.items()}
        )
    return records


class Progress:
    """Step rate and ETA for progress lines: `Progress(total).update(step)` -> text."""

    def __init__(self, total_steps: int, first_step: int = 0):
        self.total = total_steps
        self.first_step = first_step
        self.start: float | None = None

    def update(self, step: int) -> str:
        now = time.perf_counter()
        if self.start is None:  # the first step includes compilation: time from after it
            self.start, self.first_step = now, step
            return f"step {step}/{self.total}"
        rate = (step - self.first_step) / max(now - self.start, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        return f"step {step}/{self.total}  {rate:.2f} steps/s  ETA {_duration(eta)}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"
