"""The VAE sample transform: one VaeRecord + a per-record RNG -> one numpy sample dict.

DESIGN.md section 1. A record encodes one half of a chunk (V = views_per_half views) and is
supervised with K = num_supervise_per_half views of its own half plus the same K positions of
the other half, chosen with ONE random permutation `perm` of range(V):

    encoded views     h V + [0, 1, ..., V-1]              (h = the record's half)
    supervised views  h V + perm[:K], then (1-h) V + perm[:K]

Sample fields (numpy; S = encoder_size, R = render_size, P = fps_points):

    encoder_input    float32 [V, S, S, 15] channels, in order:
                       0:3   RGB of the stored image (white background), ImageNet-normalised
                             (x - (.485, .456, .406)) / (.229, .224, .225)
                       3:6   world normal, zeroed on the background (alpha < 0.5)
                       6:9   Pluecker moment o x d     (o the camera centre, d the unit ray
                       9:12  Pluecker direction d       through the pixel centre, world frame)
                       12:15 xyz map: the z-depth unprojected to world points, clipped to
                             +-xyz_clip, 0 on the background (alpha < 0.5 or depth 0)
    encoder_cameras  float32 [V, 25] the views' c.npy rows, as stored (normalised intrinsics
                     work at any resolution; K[2, 2] ~ 1/512 is left as stored)
    encoder_views    int32 [V] chunk view indices of the encoded views
    target_rgb       float32 [2K, R, R, 3] the stored RGB recomposited on `background`:
                     rgb * alpha + background * (1 - alpha)
    target_alpha     float32 [2K, R, R]
    target_depth     float32 [2K, R, R] camera z-depth, 0 on the background
    target_normal    float32 [2K, R, R, 3] world normal, zeroed on the background (alpha < 0.5)
    target_cameras   float32 [2K, 25]
    target_views     int32 [2K] chunk view indices of the supervised views
    background       float32 [3] ~ U[0, 1]^3, one colour per sample
    fps_xyz          float32 [P, 3] farthest-point sample of the record's 4096-point cloud
                     from a random start; with probability jitter_prob plus N(0, sigma^2)
                     noise, sigma ~ U(0, jitter_max)
    record_index     int32 [] the source index (caption: <chunk>/caption.txt via the source)
    half             int32 [] 0 (views 0..V-1 encoded) or 1

Pixel convention as everywhere in ga_jax: pixel (row i, col j) has its centre at
(x, y) = (j + 0.5, i + 0.5), and a ray leaves the camera centre through it.

Resizing from the stored resolution H to S or R: when H is an integer multiple of the size,
box (area) averaging by reshape-mean; otherwise PIL bilinear on float images (antialiased
when shrinking). Consequences at the object's silhouette, all deliberate:
  - depth is averaged with the background's 0, so a partially covered pixel holds about
    coverage x z, exactly like the data's own anti-aliased edges and like a renderer's
    un-normalised expected depth sum_i w_i z_i; unprojecting such a pixel lands between the
    surface and the camera (xyz_clip bounds the damage; alpha >= 0.5 keeps the worst out);
  - normals are zeroed on the background at the stored resolution before averaging, so
    edge normals shrink towards 0 instead of bending towards the background's (0, -1, 0);
    they are not re-normalised;
  - target_rgb is composited at the stored resolution and then averaged, which equals
    resize(rgb * alpha) + background * (1 - resize(alpha)): consistent with target_alpha.
The xyz map and the rays are computed at S from the resized depth with the normalised
intrinsics, so the xyz of a pixel lies on that pixel's ray.

`legacy_ray_depth=True` reproduces the reference code, which takes the stored z-depth as the
distance along the unit ray (point = o + depth d). A z-depth point really lies at distance
depth / cos(theta) along the ray (theta = angle to the optical axis), so the legacy points sit
closer to the camera by the factor cos(theta) (up to ~11% at the image corners for the data's
39.6 degree field of view).

This module imports no jax: it runs inside grain worker processes.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

import grain
import numpy as np
from PIL import Image

from ga_jax.data.fps import farthest_point_sample
from ga_jax.data.gbuffer import GBufferChunk, GBufferError, unproject_depth
from ga_jax.data.source import VaeRecord, read_record

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BadRecord",
    "SampleOptions",
    "VaeBatch",
    "VaeSampleTransform",
    "encoder_input",
    "pluecker_rays",
    "resize_maps",
    "xyz_map",
]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# Below this alpha a pixel is background: its normal and xyz are zeroed.
BACKGROUND_ALPHA = 0.5
ON_ERROR = ("fail", "skip")


@dataclasses.dataclass(frozen=True)
class SampleOptions:
    """What a sample looks like; the fields mirror configs/common.py data_config()."""

    views_per_half: int = 8
    num_supervise_per_half: int = 4
    encoder_size: int = 512
    render_size: int = 512
    fps_points: int = 768
    jitter_prob: float = 0.5
    jitter_max: float = 0.01
    xyz_clip: float = 0.45
    legacy_ray_depth: bool = False
    on_error: str = "fail"
    cache_chunks: int = 0

    def __post_init__(self):
        def positive(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")

        for name in ("views_per_half", "num_supervise_per_half", "encoder_size", "render_size",
                     "fps_points"):
            positive(name)
        if self.num_supervise_per_half > self.views_per_half:
            raise ValueError(
                f"num_supervise_per_half: expected <= views_per_half = {self.views_per_half} "
                f"(the supervised views are a subset of a half), got {self.num_supervise_per_half}"
            )
        if not 0.0 <= self.jitter_prob <= 1.0:
            raise ValueError(
                f"jitter_prob: expected a probability in [0, 1], got {self.jitter_prob}"
            )
        if not self.jitter_max >= 0.0:
            raise ValueError(f"jitter_max: expected >= 0, got {self.jitter_max}")
        if not self.xyz_clip > 0.0:
            raise ValueError(f"xyz_clip: expected > 0, got {self.xyz_clip}")
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error: expected one of {ON_ERROR}, got {self.on_error!r}")
        if isinstance(self.cache_chunks, bool) or not self.cache_chunks >= 0:
            raise ValueError(f"cache_chunks: expected an integer >= 0, got {self.cache_chunks!r}")

    @classmethod
    def from_config(cls, config: Any) -> SampleOptions:
        """Options from a data config (ConfigDict or any object with these attributes)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """Stands in for a sample whose files failed to read (on_error='skip'); the loader drops
    it, logs `message` and counts it, so no batch ever holds one."""

    record_index: int
    chunk_path: str
    message: str


# --------------------------------------------------------------------------------------------
# Pure functions (numpy), each testable alone


def resize_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """float32 [N, H, H, ...] square maps -> [N, size, size, ...].

    Box (area) average when H is a multiple of size, else PIL bilinear per channel (which
    also averages over the footprint when shrinking). Identity when H == size.
    """
    maps = np.asarray(maps, np.float32)
    num, height, width = maps.shape[:3]
    rest = maps.shape[3:]
    if height != width:
        raise ValueError(f"maps: expected square images [N, H, H, ...], got {maps.shape}")
    if height == size:
        return maps
    if height % size == 0:
        # Box average as f + f strided slice additions: ~8x faster than .mean(axis=(2, 4)),
        # whose reduction over two non-adjacent axes numpy runs slowly.
        f = height // size
        blocks = maps.reshape(num, size, f, size, f, *rest)
        rows = blocks[:, :, 0].copy()  # [N, size, size, f, ...]
        for k in range(1, f):
            rows += blocks[:, :, k]
        out = rows[:, :, :, 0].copy()  # [N, size, size, ...]
        for k in range(1, f):
            out += rows[:, :, :, k]
        out *= np.float32(1.0 / (f * f))
        return out
    flat = maps.reshape(num, height, width, -1)
    out = np.empty((num, size, size, flat.shape[-1]), np.float32)
    for n in range(num):
        for c in range(flat.shape[-1]):
            image = Image.fromarray(np.ascontiguousarray(flat[n, :, :, c]))  # mode F
            out[n, :, :, c] = np.asarray(image.resize((size, size), Image.BILINEAR))
    return out.reshape(num, size, size, *rest)


def pluecker_rays(cameras: np.ndarray, size: int) -> np.ndarray:
    """float32 [V, size, size, 6] Pluecker rays (o x d, d) of c.npy rows [V, 25].

    d is the unit world-space direction from the camera centre o through the centre
    (j + 0.5, i + 0.5) of pixel (row i, col j) of a size x size image, with the normalised
    intrinsics scaled to that size.
    """
    directions = _ray_directions(cameras, size)
    origins = np.broadcast_to(_centres(cameras)[:, None, None, :], directions.shape)
    return np.concatenate([np.cross(origins, directions), directions], axis=-1)


def xyz_map(
    depth: np.ndarray,
    alpha: np.ndarray,
    cameras: np.ndarray,
    *,
    clip: float = 0.45,
    legacy_ray_depth: bool = False,
) -> np.ndarray:
    """float32 [V, S, S, 3] world points of z-depth maps [V, S, S] seen by rows [V, 25].

    z-depth is unprojected with ga_jax.data.gbuffer.unproject_depth (or, with
    legacy_ray_depth, taken as the distance along the unit ray). Clipped to [-clip, clip];
    0 where alpha < 0.5 or depth == 0 (background).
    """
    depth = np.asarray(depth, np.float32)
    if legacy_ray_depth:
        size = depth.shape[-1]
        points = _centres(cameras)[:, None, None, :] + depth[..., None] * _ray_directions(
            cameras, size
        )
    else:
        points = unproject_depth(depth, cameras)
    foreground = (np.asarray(alpha) >= BACKGROUND_ALPHA) & (depth > 0)
    return np.where(foreground[..., None], np.clip(points, -clip, clip), 0.0).astype(np.float32)


def _masked_normals(
    normal: np.ndarray, alpha: np.ndarray, size: int, small_alpha: np.ndarray | None = None
) -> np.ndarray:
    """Normals [N, H, H, 3] zeroed on the background, resized to size, zeroed again there
    (small_alpha: alpha already resized to size, when the caller has it)."""
    fg = normal * (alpha >= BACKGROUND_ALPHA)[..., None]
    small = resize_maps(fg, size)
    small_alpha = resize_maps(alpha, size) if small_alpha is None else small_alpha
    small *= (small_alpha >= BACKGROUND_ALPHA)[..., None]
    return small


def encoder_input(
    chunk: GBufferChunk, size: int, *, clip: float = 0.45, legacy_ray_depth: bool = False
) -> np.ndarray:
    """float32 [V, size, size, 15] encoder input of all views of `chunk` (channel order in the
    module docstring: normalised RGB 3, normal 3, Pluecker 6, xyz 3)."""
    out = np.empty((chunk.num_views, size, size, 15), np.float32)
    out[..., 0:3] = (resize_maps(chunk.rgb, size) - IMAGENET_MEAN) / IMAGENET_STD
    alpha = resize_maps(chunk.alpha, size)
    depth = resize_maps(chunk.depth, size)
    out[..., 3:6] = _masked_normals(chunk.normal, chunk.alpha, size, small_alpha=alpha)
    out[..., 6:12] = pluecker_rays(chunk.cameras, size)
    out[..., 12:15] = xyz_map(
        depth, alpha, chunk.cameras, clip=clip, legacy_ray_depth=legacy_ray_depth
    )
    return out


def _centres(cameras: np.ndarray) -> np.ndarray:
    """[V, 3] camera centres (translation column of cam2world)."""
    return np.asarray(cameras, np.float32)[:, :16].reshape(-1, 4, 4)[:, :3, 3]


def _ray_directions(cameras: np.ndarray, size: int) -> np.ndarray:
    """float32 [V, size, size, 3] unit world directions through the pixel centres."""
    cameras = np.asarray(cameras, np.float32)
    cam2world = cameras[:, :16].reshape(-1, 4, 4)
    k = cameras[:, 16:25].reshape(-1, 3, 3)
    fx, fy = k[:, 0, 0, None, None] * size, k[:, 1, 1, None, None] * size
    cx, cy = k[:, 0, 2, None, None] * size, k[:, 1, 2, None, None] * size
    centres = np.arange(size, dtype=np.float32) + 0.5
    x = np.broadcast_to((centres[None, None, :] - cx) / fx, (len(k), size, size))
    y = np.broadcast_to((centres[None, :, None] - cy) / fy, (len(k), size, size))
    cam = np.stack([x, y, np.ones_like(x)], axis=-1)
    cam /= np.linalg.norm(cam, axis=-1, keepdims=True)
    # [V, S, S, 3] @ R^T [V, 1, 3, 3]: batched matmul (rotation keeps the unit length).
    return np.matmul(cam, np.swapaxes(cam2world[:, None, :3, :3], -1, -2)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# The batch contract


class VaeBatch(NamedTuple):
    """What the VAE model and its losses read: these fields of VaeSampleTransform's samples
    (module docstring), with a leading [B] in a batch. The others (view indices, record index,
    half, depth, encoder cameras) stay on the host. A NamedTuple, so a pytree for jax without
    importing it here."""

    encoder_input: Any  # [B, V, S, S, 15]
    fps_xyz: Any  # [B, P, 3]
    target_rgb: Any  # [B, 2K, R, R, 3]
    target_alpha: Any  # [B, 2K, R, R]
    target_normal: Any  # [B, 2K, R, R, 3]
    target_cameras: Any  # [B, 2K, 25]
    background: Any  # [B, 3]

    @classmethod
    def from_sample(cls, sample: Mapping[str, Any]) -> VaeBatch:
        """The contract's fields of a sample or batch dict (KeyError naming a missing one)."""
        missing = [f for f in cls._fields if f not in sample]
        if missing:
            raise KeyError(f"VaeBatch: the sample has no field(s) {missing}")
        return cls(**{f: sample[f] for f in cls._fields})

    @classmethod
    def abstract(cls, config: Any) -> VaeBatch:
        """The shapes and dtypes (jax.ShapeDtypeStruct) of a global batch that the data config
        `config` reads (config.batch_size samples): what an ahead-of-time compile of a step
        needs without reading data (launch.compile_check)."""
        import jax  # noqa: PLC0415 - the transforms run in grain workers without jax

        o = SampleOptions.from_config(config)
        b, v, k2 = int(config.batch_size), o.views_per_half, 2 * o.num_supervise_per_half
        s, r = o.encoder_size, o.render_size
        shapes = dict(
            encoder_input=(b, v, s, s, 15),
            fps_xyz=(b, o.fps_points, 3),
            target_rgb=(b, k2, r, r, 3),
            target_alpha=(b, k2, r, r),
            target_normal=(b, k2, r, r, 3),
            target_cameras=(b, k2, 25),
            background=(b, 3),
        )
        return cls(**{f: jax.ShapeDtypeStruct(shapes[f], np.float32) for f in cls._fields})

    def targets(self) -> dict[str, Any]:
        """The supervision maps, as ga_jax.losses.vae reads them."""
        return {k: getattr(self, k) for k in ("target_rgb", "target_alpha", "target_normal")}


# --------------------------------------------------------------------------------------------
# The grain transform


class VaeSampleTransform(grain.transforms.RandomMap):
    """grain RandomMap: VaeRecord -> sample dict (module docstring), reading only the views
    the sample uses. All randomness comes from the per-record `rng` that grain derives from
    the pipeline seed and the element's position, so a seed fixes every sample.

    Draw order (fixed, so samples are reproducible from the seed): the view permutation,
    the background colour, the FPS start index, the jitter coin, sigma, the jitter noise.

    With on_error='fail' a GBufferError (naming the file) propagates; with 'skip' it becomes a
    BadRecord that the loader drops, logs and counts.

    With cache_chunks = N > 0 the last N chunks read (all their views, decoded) and their
    clouds stay in memory (LRU, per process): for small datasets read over and over, where
    decoding the 512 px tiles dominates (a 512 px chunk of 16 views is ~134 MB).
    """

    def __init__(self, options: SampleOptions):
        self.options = options
        self._cache: collections.OrderedDict[str, tuple[GBufferChunk, np.ndarray]] = (
            collections.OrderedDict()
        )
        self._cache_lock = threading.Lock()

    # Worker processes receive the transform pickled: each starts with an empty cache.
    def __getstate__(self) -> dict:
        return {"options": self.options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["options"])

    def _read(self, record: VaeRecord, views: np.ndarray) -> tuple[GBufferChunk, np.ndarray]:
        """The record's chunk at `views` (in that order) and its cloud, through the cache."""
        if self.options.cache_chunks == 0:
            return read_record(record, views, min_points=self.options.fps_points)
        key = record.chunk_path
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is None:  # read outside the lock: other threads keep serving hits meanwhile
            hit = read_record(record, None, min_points=self.options.fps_points)
            with self._cache_lock:
                self._cache[key] = hit
                while len(self._cache) > self.options.cache_chunks:
                    self._cache.popitem(last=False)
        chunk, points = hit
        return _subset(chunk, views), points

    def random_map(self, record: VaeRecord, rng: np.random.Generator) -> dict | BadRecord:
        try:
            return self._sample(record, rng)
        except GBufferError as e:
            if self.options.on_error == "fail":
                raise
            return BadRecord(record.record_index, record.chunk_path, str(e))

    def _sample(self, record: VaeRecord, rng: np.random.Generator) -> dict[str, np.ndarray]:
        o = self.options
        v, k = o.views_per_half, o.num_supervise_per_half
        perm = rng.permutation(v)[:k]
        background = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        own = record.half * v
        other = (1 - record.half) * v
        encoded = own + np.arange(v)
        # Read the encoded half and the K supervised views of the other half (own-half
        # supervised views are among the encoded ones): positions in the read subset below.
        chunk, points = self._read(record, np.concatenate([encoded, other + perm]))
        enc = _subset(chunk, np.arange(v))
        sup = _subset(chunk, np.concatenate([perm, v + np.arange(k)]))

        composite = sup.rgb * sup.alpha[..., None] + background * (1.0 - sup.alpha[..., None])
        start = int(rng.integers(points.shape[0]))
        fps = points[farthest_point_sample(points, o.fps_points, start)]
        if rng.random() < o.jitter_prob:
            sigma = rng.uniform(0.0, o.jitter_max)
            fps = fps + rng.normal(0.0, 1.0, fps.shape) * sigma
        return {
            "encoder_input": encoder_input(
                enc, o.encoder_size, clip=o.xyz_clip, legacy_ray_depth=o.legacy_ray_depth
            ),
            "encoder_cameras": enc.cameras,
            "encoder_views": enc.views.astype(np.int32),
            "target_rgb": resize_maps(composite, o.render_size),
            "target_alpha": resize_maps(sup.alpha, o.render_size),
            "target_depth": resize_maps(sup.depth, o.render_size),
            "target_normal": _masked_normals(sup.normal, sup.alpha, o.render_size),
            "target_cameras": sup.cameras,
            "target_views": sup.views.astype(np.int32),
            "background": background,
            "fps_xyz": fps.astype(np.float32),
            "record_index": np.int32(record.record_index),
            "half": np.int32(record.half),
        }


def _subset(chunk: GBufferChunk, positions: np.ndarray) -> GBufferChunk:
    """The views at `positions` of an already-read chunk (no copy of unused views)."""
    return dataclasses.replace(
        chunk,
        rgb=chunk.rgb[positions],
        alpha=chunk.alpha[positions],
        depth=chunk.depth[positions],
        normal=chunk.normal[positions],
        cameras=chunk.cameras[positions],
        views=chunk.views[positions],
    )
