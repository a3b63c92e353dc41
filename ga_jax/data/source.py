"""Random-access grain source of VAE training records over G-buffer chunks (DESIGN.md section 1).

Every chunk listed in `dataset.json` gives two records: record 2c encodes half A of chunk c
(views 0 .. views_per_half - 1) and record 2c + 1 encodes half B (views views_per_half ..
2 views_per_half - 1); see ga_jax.data.transforms for what a record turns into.

Indexing the source is cheap: it returns a `VaeRecord` (paths and the half), and the files are
read later by `read_record`, inside the random transform, because which views to read depends
on the per-record random permutation. This keeps the source a pure function of the index (as
grain needs for shuffling, sharding and checkpointing) and reads only the views a sample uses.

This module imports no jax: it runs inside grain worker processes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ga_jax.data.gbuffer import GBufferChunk, GBufferError, read_chunk
from ga_jax.data.ply import PlyError, read_ply_points

__all__ = ["VaeRecord", "VaeRecordSource", "chunk_view_count", "load_listing", "read_record"]


@dataclasses.dataclass(frozen=True)
class VaeRecord:
    """One VAE training record: which chunk, which half is encoded, where its point cloud is.

    record_index: index of the record in the source (2 * chunk_index + half).
    chunk:        the chunk path as listed in dataset.json (relative to the G-buffer root).
    chunk_path:   the chunk directory.
    half:         0 = encode views [0, views_per_half), 1 = [views_per_half, 2 views_per_half).
    fps_root:     root of the FPS tree; the cloud is fps_root/<ins.txt>/<fps_file>.
    fps_file:     file name of the cloud, `fps-4096.ply` in the data.
    """

    record_index: int
    chunk: str
    chunk_path: str
    half: int
    fps_root: str
    fps_file: str


class VaeRecordSource:
    """The chunks of dataset.json (optionally only some classes) as 2 records per chunk.

    Args:
      gbuffer_root: directory holding dataset.json and the chunk directories.
      fps_root: directory of the FPS point clouds (`<fps_root>/<ins>/<fps_file>`).
      dataset_json: the class -> chunk list file, relative to gbuffer_root unless absolute.
      classes: class names to keep (empty = every class, in the file's order).
      max_chunks: keep only the first max_chunks chunks (None = all), e.g. for tiny runs.
      fps_file: the point-cloud file name inside each instance directory.

    Raises ValueError naming the file or field when dataset.json is missing or malformed, a
    class is unknown, or nothing is left to read. The chunk directories themselves are not
    checked here (a large dataset would take long to stat); bad chunks surface when read,
    under the loader's `on_error` policy.
    """

    def __init__(
        self,
        gbuffer_root: str | os.PathLike,
        fps_root: str | os.PathLike,
        *,
        dataset_json: str = "dataset.json",
        classes: Sequence[str] = (),
        max_chunks: int | None = None,
        fps_file: str = "fps-4096.ply",
    ):
        self.gbuffer_root = Path(gbuffer_root)
        self.fps_root = Path(fps_root)
        self.fps_file = fps_file
        index_file = Path(dataset_json)
        if not index_file.is_absolute():
            index_file = self.gbuffer_root / index_file
        self.dataset_json = index_file
        listing = load_listing(index_file)
        if isinstance(classes, str):
            classes = (classes,)
        unknown = [name for name in classes if name not in listing]
        if unknown:
            raise ValueError(
                f"classes: {unknown} not found in {index_file} (it lists {sorted(listing)})"
            )
        keep = list(classes) if classes else list(listing)
        chunks = [chunk for name in keep for chunk in listing[name]]
        if max_chunks is not None:
            if max_chunks < 1:
                raise ValueError(f"max_chunks: expected None or >= 1, got {max_chunks}")
            chunks = chunks[:max_chunks]
        if not chunks:
            raise ValueError(f"{index_file}: no chunks listed for classes {keep}")
        self.classes = tuple(keep)
        self.chunks = tuple(chunks)

    def __len__(self) -> int:
        return 2 * len(self.chunks)

    def __getitem__(self, index: int) -> VaeRecord:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"record index {index} out of range [0, {len(self)})")
        chunk = self.chunks[index // 2]
        return VaeRecord(
            record_index=index,
            chunk=chunk,
            chunk_path=str(self.gbuffer_root / chunk),
            half=index % 2,
            fps_root=str(self.fps_root),
            fps_file=self.fps_file,
        )

    def caption(self, record_index: int) -> str:
        """The caption of a record's object (its chunk's caption.txt), e.g. for a batch's
        `record_index` values (strings stay out of the batches)."""
        path = Path(self[record_index].chunk_path) / "caption.txt"
        try:
            return path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise GBufferError(f"{path}: cannot read the caption: {type(e).__name__}: {e}") from e

    def __repr__(self) -> str:
        # Deterministic (no object ids): grain compares sources by repr when restoring.
        return (
            f"VaeRecordSource(gbuffer_root={str(self.gbuffer_root)!r}, "
            f"fps_root={str(self.fps_root)!r}, dataset_json={str(self.dataset_json)!r}, "
            f"classes={self.classes!r}, num_chunks={len(self.chunks)})"
        )


def load_listing(path: Path) -> dict[str, list[str]]:
    """dataset.json: class name -> chunk paths (ValueError naming the file when malformed)."""
    try:
        listing = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(
            f"{path}: cannot read the dataset index (expected a JSON object class -> list of "
            f"chunk paths): {type(e).__name__}: {e}"
        ) from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(listing, dict) or not all(
        isinstance(chunks, list) and all(isinstance(c, str) for c in chunks)
        for chunks in listing.values()
    ):
        raise ValueError(
            f"{path}: expected a JSON object mapping class names to lists of chunk paths"
        )
    return listing


def chunk_view_count(chunk_path: str | os.PathLike) -> int:
    """Number of views in a chunk, from the raw_img.jpg header alone (width / height)."""
    path = Path(chunk_path) / "raw_img.jpg"
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError) as e:
        raise GBufferError(f"{path}: cannot read the image header: {type(e).__name__}: {e}") from e
    if height < 1 or width % height:
        raise GBufferError(
            f"{path}: expected square views tiled horizontally (width a multiple of the "
            f"height), found {width}x{height}"
        )
    return width // height


def read_record(
    record: VaeRecord, views: Sequence[int] | np.ndarray | None, min_points: int
) -> tuple[GBufferChunk, np.ndarray]:
    """Read the given views (None = all) of the record's chunk and its FPS cloud (float32
    [P, 3]).

    Raises GBufferError naming the file for any problem with the data, including a cloud with
    fewer than `min_points` points (FPS could not pick that many).
    """
    chunk = read_chunk(record.chunk_path, views=views)
    ply = Path(record.fps_root) / chunk.instance_id / record.fps_file
    if not ply.is_file():
        raise GBufferError(
            f"{ply}: missing FPS point cloud for chunk {record.chunk_path} (expected "
            f"<fps_root>/<ins.txt>/{record.fps_file})"
        )
    try:
        points = read_ply_points(ply)
    except PlyError as e:  # the loader's on_error policy handles one error type
        raise GBufferError(str(e)) from e
    if points.shape[0] < min_points:
        raise GBufferError(
            f"{ply}: expected at least fps_points = {min_points} points, found {points.shape[0]}"
        )
    return chunk, points
