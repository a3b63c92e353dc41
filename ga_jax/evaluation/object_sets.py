"""The two sides of a metric evaluation: generated objects (sample directories or surfel PLYs)
and a reference set (G-buffer chunks and FPS clouds), read under one stated render protocol.

Listing never drops an object silently: everything that looks like an object but cannot be
used (a sample directory without surfels.ply, a PLY that does not parse, a reference object
without its chunk or cloud) becomes a `Problem` naming the path, and the job reports them.

Objects are named by their path relative to the set's root (a sample directory `cone/0/23/`
or a file `cone/0/23.ply` are both `cone/0/23`; a trailing `_surfels` of a PLY's stem is
dropped), so that a generated object and its reference pair up by name. Each object carries
the SHA-256 of the bytes its features are computed from: the feature cache is keyed by it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ga_jax.data.fps import farthest_point_sample
from ga_jax.data.gbuffer import read_chunk
from ga_jax.data.ply import read_ply_points
from ga_jax.export.media import render_views
from ga_jax.export.ply import read_surfel_ply
from ga_jax.pipeline.sample_files import FILES as SAMPLE_FILES
from ga_jax.rendering.cameras import Cameras, orbit_cameras
from ga_jax.rendering.surfels import Surfels

__all__ = [
    "GeneratedObject",
    "Problem",
    "ReferenceObject",
    "RenderProtocol",
    "list_generated",
    "list_reference",
]

FPS_FILE = "fps-4096.ply"
# The chunk files a reference object's views are read from (their bytes key its image features).
CHUNK_IMAGE_FILES = ("raw_img.jpg", "alpha.jpg", "c.npy")


@dataclasses.dataclass(frozen=True)
class Problem:
    """An object the job could not use: its path and why."""

    path: str
    error: str


@dataclasses.dataclass(frozen=True)
class RenderProtocol:
    """How both sides become images and clouds (every field goes next to every number).

    Generated objects are rendered with our surfel renderer on `views` cameras evenly spaced in
    azimuth (the first at azimuth 0), `elevation_deg` above the equator, at `radius` from the
    origin, with the data's intrinsics, `resolution` px square, over `background`. Reference
    objects give the views `reference_views` of their chunk `reference_chunk` (the dataset's
    own renders and cameras), resized to `resolution` with an antialiased (area-weighted)
    linear filter and composited over `background` with their alpha.

    Clouds: a generated object's cloud is `points` points picked by farthest-point sampling
    (first point: index 0) from the centres of its surfels whose opacity is at least
    `opacity_threshold`; when fewer surfels pass, all of them are taken and repeated cyclically
    up to `points` (the count is reported). The reference cloud is the dataset's FPS file,
    FPS'd the same way when it holds more than `points` points.
    """

    views: int = 8
    resolution: int = 128
    elevation_deg: float = 20.0
    radius: float = 1.75
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    opacity_threshold: float = 0.1
    points: int = 4096
    reference_chunk: str = "1"
    reference_views: tuple[int, ...] = (1, 3, 5, 7, 9, 11, 13, 15)
    backend: str = "xla"

    def __post_init__(self):
        for name in ("views", "resolution", "points"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"protocol.{name}: expected a positive integer, got {value!r}")
        if len(self.background) != 3 or not all(0.0 <= b <= 1.0 for b in self.background):
            raise ValueError(
                f"protocol.background: expected three values in [0, 1], got {self.background}"
            )
        if not 0.0 <= self.opacity_threshold < 1.0:
            raise ValueError(
                f"protocol.opacity_threshold: expected [0, 1), got {self.opacity_threshold}"
            )
        if not self.reference_views:
            raise ValueError("protocol.reference_views: expected at least one view index")

    @classmethod
    def from_config(cls, config: Any) -> RenderProtocol:
        fields = dict(config)
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(
                f"protocol: unknown field(s) {unknown}; expected some of "
                f"{[f.name for f in dataclasses.fields(cls)]}"
            )
        for name in ("background", "reference_views"):
            if name in fields:
                fields[name] = tuple(fields[name])
        if "reference_chunk" in fields:
            fields["reference_chunk"] = str(fields["reference_chunk"])
        return cls(**fields)

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}

    def image_fields(self) -> dict[str, Any]:
        """The fields that determine an object's images (what image features are keyed by)."""
        keys = ("views", "resolution", "elevation_deg", "radius", "background",
                "reference_chunk", "reference_views")  # fmt: skip
        return {k: self.as_dict()[k] for k in keys}

    def cloud_fields(self) -> dict[str, Any]:
        """The fields that determine an object's cloud (what cloud features are keyed by)."""
        return {k: self.as_dict()[k] for k in ("opacity_threshold", "points")}

    def describe(self) -> str:
        """One line for the report."""
        return (
            f"{self.views} views at {self.resolution} px (generated: our renderer, elevation "
            f"{self.elevation_deg:g} deg, radius {self.radius:g}; reference: chunk "
            f"{self.reference_chunk} views {list(self.reference_views)}), background "
            f"{list(self.background)}; clouds of {self.points} points (generated: FPS of surfel "
            f"centres with opacity >= {self.opacity_threshold:g})"
        )


def file_digest(paths: Iterable[Path], root: Path) -> str:
    """SHA-256 over each file's path relative to root and its bytes, in order."""
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path.relative_to(root)).encode())
        h.update(b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def fps_cloud(xyz: np.ndarray, points: int) -> tuple[np.ndarray, int]:
    """(cloud [points, 3], how many distinct points it holds) by the protocol's rule."""
    xyz = np.asarray(xyz, np.float32)
    n = len(xyz)
    if n == 0:
        raise ValueError("no points to sample a cloud from")
    if n > points:
        return xyz[farthest_point_sample(xyz, points)], points
    order = farthest_point_sample(xyz, n) if n > 1 else np.zeros(1, np.int64)
    return xyz[order[np.arange(points) % n]], n


# --------------------------------------------------------------------------------------------
# Generated objects


@dataclasses.dataclass(frozen=True)
class GeneratedObject:
    name: str
    path: Path  # the surfel PLY
    digest: str
    prompt: str | None = None  # a sample directory's prompt (its latent.npz info), if any
    edited_from: str | None = None  # an edited sample's original sample directory, if any

    def surfels(self) -> Surfels:
        return read_surfel_ply(self.path)

    def views(
        self,
        protocol: RenderProtocol,
        surfels: Surfels | None = None,
        cameras: Cameras | None = None,
    ) -> np.ndarray:
        """float32 [V, R, R, 3] in [0, 1]: the protocol's views of the object (or its views by
        `cameras`, e.g. a reference object's)."""
        surfels = self.surfels() if surfels is None else surfels
        r = protocol.resolution
        if cameras is None:
            cameras = orbit_cameras(protocol.views, r, r, protocol.radius, protocol.elevation_deg)
        out = render_views(
            surfels, cameras, protocol.background, protocol.backend, where=str(self.path)
        )
        return np.clip(np.asarray(out.rgb, np.float32), 0.0, 1.0)

    def cloud(self, protocol: RenderProtocol, surfels: Surfels | None = None):
        """(cloud [points, 3], distinct points) of the surfel centres by the protocol's rule."""
        surfels = self.surfels() if surfels is None else surfels
        keep = np.asarray(surfels.opacities) >= protocol.opacity_threshold
        if not keep.any():
            raise ValueError(
                f"{self.path}: no surfel has opacity >= {protocol.opacity_threshold:g} "
                "(protocol.opacity_threshold)"
            )
        return fps_cloud(np.asarray(surfels.means)[keep], protocol.points)


def _ply_name(path: Path, root: Path) -> str:
    name = path.relative_to(root).with_suffix("").as_posix()
    return name[: -len("_surfels")] if name.endswith("_surfels") else name


def list_generated(root: str | Path, layout: str) -> tuple[list[GeneratedObject], list[Problem]]:
    """The generated objects under root, sorted by name, and the problems found.

    layout "samples": every directory holding any of a sample directory's files
    (ga_jax/pipeline/sample_files.py) is one object, read from its surfels.ply.
    layout "ply": every *.ply under root is one object (a 2DGS surfel PLY)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"generated.root: {root} is not a directory")
    problems: list[Problem] = []
    found: dict[str, Path] = {}
    if layout == "samples":
        directories = sorted({p.parent for name in SAMPLE_FILES for p in root.rglob(name)})
        for directory in directories:
            path = directory / "surfels.ply"
            if not path.is_file():
                problems.append(Problem(str(path), "missing (the sample directory has no surfels)"))
                continue
            found[directory.relative_to(root).as_posix()] = path
    elif layout == "ply":
        for path in sorted(root.rglob("*.ply")):
            found[_ply_name(path, root)] = path
    else:
        raise ValueError(f"generated.layout: expected 'samples' or 'ply', got {layout!r}")
    objects = []
    for name, path in sorted(found.items()):
        try:
            digest = file_digest([path], root)
        except OSError as e:
            problems.append(Problem(str(path), f"unreadable: {e}"))
            continue
        info = _sample_info(path.parent) if layout == "samples" else {}
        prompt, original = info.get("prompt"), info.get("edited_from")
        objects.append(
            GeneratedObject(
                name,
                path,
                digest,
                prompt if isinstance(prompt, str) and prompt else None,
                original if isinstance(original, str) and original else None,
            )
        )
    return objects, problems


def _sample_info(directory: Path) -> dict[str, Any]:
    """A sample directory's latent.npz info ({} when absent or unreadable: only the CLIP score
    and the edit measure read it, and they report the objects they cannot use)."""
    try:
        with np.load(directory / "latent.npz") as data:
            info = json.loads(str(data["info"]))
    except (OSError, KeyError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


# --------------------------------------------------------------------------------------------
# Reference objects


@dataclasses.dataclass(frozen=True)
class ReferenceObject:
    name: str
    fps_path: Path
    chunk_path: Path | None  # None when the reference set has no G-buffer root
    cloud_digest: str
    image_digest: str | None

    def views(self, protocol: RenderProtocol) -> np.ndarray:
        """float32 [V, R, R, 3] in [0, 1]: the chunk's protocol views, resized, composited."""
        return self.views_and_cameras(protocol)[0]

    def views_and_cameras(self, protocol: RenderProtocol) -> tuple[np.ndarray, Cameras]:
        """(views as `views` gives them, their cameras at the protocol's resolution)."""
        if self.chunk_path is None:
            raise ValueError(f"{self.name}: the reference set has no G-buffer root for views")
        chunk = read_chunk(self.chunk_path, views=list(protocol.reference_views))
        r = protocol.resolution
        cameras = Cameras.from_rows(jnp.asarray(chunk.cameras), chunk.height, chunk.width)
        rgb = jnp.asarray(chunk.rgb)
        alpha = jnp.asarray(chunk.alpha)[..., None]
        # The stored RGB is over white, not premultiplied: recover the premultiplied colour,
        # then composite over the protocol's background.
        premultiplied = rgb - (1.0 - alpha)
        v = len(protocol.reference_views)
        premultiplied = jax.image.resize(premultiplied, (v, r, r, 3), "linear", antialias=True)
        alpha = jax.image.resize(alpha, (v, r, r, 1), "linear", antialias=True)
        out = premultiplied + (1.0 - alpha) * jnp.asarray(protocol.background, jnp.float32)
        return np.clip(np.asarray(out, np.float32), 0.0, 1.0), cameras.resized(r, r)

    def cloud(self, protocol: RenderProtocol):
        """(cloud [points, 3], distinct points) from the dataset's FPS file."""
        return fps_cloud(read_ply_points(self.fps_path), protocol.points)


def list_reference(
    fps_root: str | Path,
    gbuffer_root: str | Path | None,
    protocol: RenderProtocol,
    fps_file: str = FPS_FILE,
) -> tuple[list[ReferenceObject], list[Problem]]:
    """The reference objects (one per `<fps_root>/<name>/<fps_file>`, sorted), each with its
    chunk `<gbuffer_root>/<name>/<protocol.reference_chunk>` when gbuffer_root is given, and
    the problems found (a chunk missing a file, an object with a chunk but no cloud)."""
    fps_root = Path(fps_root)
    if not fps_root.is_dir():
        raise FileNotFoundError(f"reference.fps_root: {fps_root} is not a directory")
    gbuffer = Path(gbuffer_root) if gbuffer_root else None
    if gbuffer is not None and not gbuffer.is_dir():
        raise FileNotFoundError(f"reference.gbuffer_root: {gbuffer} is not a directory")
    objects, problems = [], []
    names = set()
    for fps_path in sorted(fps_root.rglob(fps_file)):
        name = fps_path.parent.relative_to(fps_root).as_posix()
        names.add(name)
        chunk, image_digest = None, None
        try:
            cloud_digest = file_digest([fps_path], fps_root)
            if gbuffer is not None:
                chunk = gbuffer / name / protocol.reference_chunk
                files = [chunk / f for f in CHUNK_IMAGE_FILES]
                missing = [str(f) for f in files if not f.is_file()]
                if missing:
                    problems.append(Problem(missing[0], "missing (reference chunk file)"))
                    continue
                image_digest = file_digest(files, gbuffer)
        except OSError as e:
            problems.append(Problem(str(fps_path), f"unreadable: {e}"))
            continue
        objects.append(ReferenceObject(name, fps_path, chunk, cloud_digest, image_digest))
    if gbuffer is not None:  # objects with views but no cloud would vanish from every measure
        for chunk in sorted(gbuffer.rglob(f"{protocol.reference_chunk}/c.npy")):
            name = chunk.parent.parent.relative_to(gbuffer).as_posix()
            if name not in names:
                problems.append(Problem(str(fps_root / name / fps_file), "missing (FPS cloud)"))
    return objects, problems
