"""Reader and writer of G-buffer chunk directories (DESIGN.md section 1); the FPS point-cloud
PLY files are read and written by ga_jax.data.ply.

A chunk directory holds V views (16 in the Objaverse data) of one object at H x H pixels:

  raw_img.jpg   RGB, the V views tiled horizontally (view v = columns v*H .. v*H + H - 1),
                white background
  alpha.jpg     grey soft alpha 0..255, same tiling
  normal.png    8-bit RGB world normal, same tiling: n_raw = 2 rgb / 255 - 1 and the world
                normal is n = (-n_raw.x, -n_raw.z, n_raw.y); the background decodes to about
                (0, -1, 0), so mask it with alpha
  depth.npz     key `depth`, float [V, H, H] camera z-depth (not ray length), 0 = background
  c.npy         float [V, 25] cameras: [0:16] row-major 4x4 OpenCV cam2world (x right, y down,
                +z forward, world z-up), [16:25] row-major 3x3 intrinsics normalised by the
                image size (fx = fy ~ 1.3889, cx = cy = 0.5); K[2, 2] is stored as ~1/512
                and ignored
  caption.txt   one caption;  ins.txt  the instance id (e.g. `Animals/0/10017`)
  bbox.npy      overflowed uint8 in the data: ignored, not required

Pixel convention (as everywhere in ga_jax): pixel (row i, col j) has its centre at
(x, y) = (j + 0.5, i + 0.5).

`write_chunk` writes this format (the synthetic generator uses it).

Every problem with the files raises GBufferError (a ValueError) whose message starts with the
offending file's path and says what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ga_jax.data.npy import load_arrays

__all__ = [
    "CHUNK_FILES",
    "GBufferChunk",
    "GBufferError",
    "encode_normals",
    "read_chunk",
    "unproject_depth",
    "write_chunk",
]

# The files a chunk directory must hold (bbox.npy is ignored and may be absent).
CHUNK_FILES = (
    "raw_img.jpg",
    "alpha.jpg",
    "normal.png",
    "depth.npz",
    "c.npy",
    "caption.txt",
    "ins.txt",
)


class GBufferError(ValueError):
    """A G-buffer chunk (or, through ga_jax.data.source, its PLY cloud) is missing, unreadable
    or inconsistent.

    The message names the file and says what was expected and what was found.
    """


@dataclasses.dataclass(frozen=True, eq=False)
class GBufferChunk:
    """The decoded views of one chunk (all arrays numpy, float32).

    rgb:      [V, H, W, 3] in [0, 1], as stored (white background, not premultiplied).
    alpha:    [V, H, W] in [0, 1], soft (anti-aliased edges).
    depth:    [V, H, W] camera z-depth, 0 on the background. Note: at anti-aliased edge
              pixels the stored depth is blended with the background's 0 (about alpha * z),
              so a partially covered pixel unprojects too close to the camera; mask with a
              high alpha (or divide by alpha) where exact edge geometry matters.
    normal:   [V, H, W, 3] world normal decoded as in the module docstring (not
              re-normalised; unit length to ~1% on the object, ~(0, -1, 0) on the background).
    cameras:  [V, 25] c.npy rows of the selected views (see unproject_depth).
    caption:  the caption (stripped).
    instance_id: the instance id from ins.txt (stripped), e.g. `Animals/0/10017`.
    views:    [V] int64 indices of the selected views within the chunk.
    path:     the chunk directory.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    cameras: np.ndarray
    caption: str
    instance_id: str
    views: np.ndarray
    path: Path

    @property
    def num_views(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[2])


# --------------------------------------------------------------------------------------------
# Images


def _open_image(path: Path) -> Image.Image:
    """Open an image lazily (header only); GBufferError when the header cannot be read."""
    try:
        return Image.open(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise GBufferError(
            f"{path}: cannot read the image header (expected a valid {path.suffix} file): "
            f"{type(e).__name__}: {e}"
        ) from e


def _decode_image(image: Image.Image, path: Path, mode: str) -> np.ndarray:
    """Fully decode an opened image into uint8 [H, W] (mode 'L') or [H, W, 3] ('RGB')."""
    try:
        image.load()
        if image.mode != mode:
            image = image.convert(mode)
        return np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise GBufferError(
            f"{path}: cannot decode the image (truncated or corrupt {path.suffix} file?): "
            f"{type(e).__name__}: {e}"
        ) from e


def _check_mode(image: Image.Image, path: Path, allowed: Sequence[str], what: str) -> None:
    if image.mode not in allowed:
        raise GBufferError(
            f"{path}: expected {what} (PIL mode {' or '.join(allowed)}), found mode {image.mode!r}"
        )


def _tiles(array: np.ndarray, num_views: int, size: int, views: np.ndarray) -> np.ndarray:
    """[H, V*H, ...] horizontally tiled image -> [len(views), H, H, ...] selected tiles."""
    rest = array.shape[2:]
    tiled = array.reshape(size, num_views, size, *rest)
    return np.moveaxis(tiled, 1, 0)[views]


# --------------------------------------------------------------------------------------------
# Arrays and text


def _load_depth(path: Path) -> np.ndarray:
    try:
        arrays = load_arrays(path)
        if not isinstance(arrays, dict) or "depth" not in arrays:
            keys = list(arrays) if isinstance(arrays, dict) else "none (a .npy array)"
            raise GBufferError(f"{path}: expected an array under key 'depth', found keys {keys}")
        depth = arrays["depth"]
    except GBufferError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise GBufferError(
            f"{path}: cannot read the .npz archive (expected key 'depth' holding float "
            f"[V, H, W]): {type(e).__name__}: {e}"
        ) from e
    return depth


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = load_arrays(path)
    except (OSError, ValueError, EOFError) as e:
        raise GBufferError(
            f"{path}: cannot read the .npy array (expected float [V, 25]): {type(e).__name__}: {e}"
        ) from e
    if not isinstance(array, np.ndarray):
        raise GBufferError(f"{path}: expected a .npy array (float [V, 25]), found a .npz archive")
    return array


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise GBufferError(
            f"{path}: cannot read the text file (expected UTF-8): {type(e).__name__}: {e}"
        ) from e


def _select_views(
    views: Sequence[int] | np.ndarray | None, num_views: int, path: Path
) -> np.ndarray:
    if views is None:
        return np.arange(num_views, dtype=np.int64)
    selected = np.asarray(views)
    if selected.ndim != 1 or (selected.size and not np.issubdtype(selected.dtype, np.integer)):
        raise GBufferError(f"{path}: views must be a 1-D sequence of ints, got {views!r}")
    selected = selected.astype(np.int64)
    bad = selected[(selected < 0) | (selected >= num_views)]
    if bad.size:
        raise GBufferError(
            f"{path}: view indices must lie in [0, {num_views}) (the chunk has {num_views} "
            f"views), got {bad.tolist()}"
        )
    return selected


# --------------------------------------------------------------------------------------------
# The chunk reader


def read_chunk(
    path: str | os.PathLike, views: Sequence[int] | np.ndarray | None = None
) -> GBufferChunk:
    """Read one G-buffer chunk directory; `views` selects (and orders) a subset of its views.

    The cheap checks run first (all files present, image sizes from the headers, depth and
    camera shapes) so that an inconsistent chunk fails before the images are decoded.
    Raises GBufferError naming the file for: a missing file, an undecodable or truncated
    image, a tile width that is not a multiple of the height, shapes that disagree between
    files, non-finite cameras or depth, negative depth, view indices out of range.
    """
    root = Path(path)
    if not root.is_dir():
        raise GBufferError(
            f"{root}: expected a G-buffer chunk directory holding {', '.join(CHUNK_FILES)}, "
            f"found {'a file' if root.exists() else 'nothing'}"
        )
    files = {name: root / name for name in CHUNK_FILES}
    missing = [name for name, file in files.items() if not file.is_file()]
    if missing:
        raise GBufferError(
            f"{files[missing[0]]}: missing file (a chunk needs {', '.join(CHUNK_FILES)}; "
            f"missing: {', '.join(missing)})"
        )

    # Image headers: sizes and modes, no decoding yet.
    images: dict[str, Image.Image] = {}
    try:
        for name in ("raw_img.jpg", "alpha.jpg", "normal.png"):
            images[name] = _open_image(files[name])
        raw = images["raw_img.jpg"]
        _check_mode(raw, files["raw_img.jpg"], ("RGB", "L"), "an 8-bit RGB image")
        _check_mode(images["alpha.jpg"], files["alpha.jpg"], ("L", "RGB"), "an 8-bit grey image")
        _check_mode(images["normal.png"], files["normal.png"], ("RGB", "RGBA"), "8-bit RGB")
        width, height = raw.size
        if height < 1 or width < 1 or width % height != 0:
            raise GBufferError(
                f"{files['raw_img.jpg']}: expected V square views of H x H pixels tiled "
                f"horizontally (width a multiple of the height), found width {width} and "
                f"height {height}"
            )
        num_views = width // height
        for name in ("alpha.jpg", "normal.png"):
            if images[name].size != raw.size:
                w, h = images[name].size
                raise GBufferError(
                    f"{files[name]}: expected {width}x{height} pixels (W x H) like "
                    f"raw_img.jpg ({num_views} views of {height}x{height}), found {w}x{h}"
                )

        depth = _load_depth(files["depth.npz"])
        if depth.shape != (num_views, height, height):
            raise GBufferError(
                f"{files['depth.npz']}: expected 'depth' of shape {(num_views, height, height)} "
                f"({num_views} views of {height}x{height} as in raw_img.jpg), found {depth.shape}"
            )
        if not np.issubdtype(depth.dtype, np.floating):
            raise GBufferError(f"{files['depth.npz']}: expected float depth, found {depth.dtype}")
        if not np.all(np.isfinite(depth)):
            count = int(np.sum(~np.isfinite(depth)))
            raise GBufferError(
                f"{files['depth.npz']}: expected finite depth, found {count} NaN/inf values"
            )
        if np.any(depth < 0):
            raise GBufferError(
                f"{files['depth.npz']}: expected depth >= 0 (0 = background), found minimum "
                f"{float(depth.min())}"
            )

        cameras = _load_npy(files["c.npy"])
        if cameras.shape != (num_views, 25):
            raise GBufferError(
                f"{files['c.npy']}: expected shape {(num_views, 25)} ({num_views} views as in "
                f"raw_img.jpg, 16 cam2world + 9 intrinsics floats each), found {cameras.shape}"
            )
        if not np.issubdtype(cameras.dtype, np.floating):
            raise GBufferError(f"{files['c.npy']}: expected float cameras, found {cameras.dtype}")
        if not np.all(np.isfinite(cameras)):
            rows = sorted({int(r) for r in np.nonzero(~np.isfinite(cameras))[0]})
            raise GBufferError(
                f"{files['c.npy']}: expected finite camera rows, found NaN/inf in view(s) {rows}"
            )

        caption = _read_text(files["caption.txt"])
        instance_id = _read_text(files["ins.txt"])
        selected = _select_views(views, num_views, root)

        # Decode (the expensive part).
        rgb8 = _decode_image(raw, files["raw_img.jpg"], "RGB")
        alpha8 = _decode_image(images["alpha.jpg"], files["alpha.jpg"], "L")
        normal8 = _decode_image(images["normal.png"], files["normal.png"], "RGB")
    finally:
        for image in images.values():
            image.close()

    rgb = _tiles(rgb8, num_views, height, selected).astype(np.float32) / 255.0
    alpha = _tiles(alpha8, num_views, height, selected).astype(np.float32) / 255.0
    n_raw = _tiles(normal8, num_views, height, selected).astype(np.float32) * (2.0 / 255.0) - 1.0
    normal = np.stack([-n_raw[..., 0], -n_raw[..., 2], n_raw[..., 1]], axis=-1)
    return GBufferChunk(
        rgb=rgb,
        alpha=alpha,
        depth=np.ascontiguousarray(depth[selected], dtype=np.float32),
        normal=normal,
        cameras=np.ascontiguousarray(cameras[selected], dtype=np.float32),
        caption=caption,
        instance_id=instance_id,
        views=selected,
        path=root,
    )


# --------------------------------------------------------------------------------------------
# The chunk writer


def encode_normals(normal: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] PNG values of world normals [..., 3]: the inverse of the reader's
    n = (-m.x, -m.z, m.y) with m = 2 rgb / 255 - 1, i.e. m = (-n.x, n.z, -n.y)."""
    n = np.asarray(normal, np.float64)
    m = np.stack([-n[..., 0], n[..., 2], -n[..., 1]], -1)
    return np.clip(np.round((m + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


def _tile(views: np.ndarray) -> np.ndarray:
    """[V, H, W, ...] -> [H, V*W, ...] (view v = columns v*W .. v*W + W - 1)."""
    return np.concatenate(list(views), axis=1)


def write_chunk(
    path: str | os.PathLike,
    *,
    rgb: np.ndarray,
    alpha: np.ndarray,
    depth: np.ndarray,
    normal: np.ndarray,
    cameras: np.ndarray,
    caption: str,
    instance_id: str,
) -> None:
    """Write one G-buffer chunk directory (the files of the module docstring, no bbox.npy).

    V views of H x H pixels (square, as read_chunk requires); float arrays, any float dtype:
      path:        the chunk directory; created with its parents, existing files replaced.
      rgb:         [V, H, H, 3] in [0, 1], straight (not premultiplied) colour over white,
                   c a + (1 - a). Stored as round(255 rgb) (clipped to 0..255), the views tiled
                   horizontally, in raw_img.jpg (JPEG quality 95, no chroma subsampling).
      alpha:       [V, H, H] soft alpha in [0, 1]; round(255 alpha), tiled, in alpha.jpg (grey
                   JPEG, quality 95).
      depth:       [V, H, H] camera z-depth (not ray length), >= 0 and 0 on the background;
                   float32 under key `depth` in depth.npz (compressed).
      normal:      [V, H, H, 3] unit world normals, (0, -1, 0) on the background; tiled in
                   normal.png (lossless) as encode_normals(normal) = round(255 (m + 1) / 2) with
                   m = (-n.x, n.z, -n.y), the inverse of read_chunk's decoding.
      cameras:     [V, 25] c.npy rows as read_chunk documents them ([0:16] row-major OpenCV
                   cam2world, [16:25] row-major K normalised by the image size); float32 in c.npy.
      caption:     written to caption.txt, UTF-8, as given (the data has no trailing newline).
      instance_id: written to ins.txt, likewise (e.g. `Animals/0/10017`).

    read_chunk returns depth, cameras and (stripped) texts exactly; normals within 1/255 per
    component (PNG is lossless: only the 8-bit rounding of m is lost); rgb and alpha within
    the 8-bit rounding (0.5/255) plus the JPEG loss (none for a constant 8x8 block of alpha,
    <= 1/255 for one of rgb; tests/data/test_gbuffer.py derives both). Raises ValueError,
    before writing anything, for arrays whose shapes disagree, non-square views, or depth /
    cameras that read_chunk would reject (non-finite, negative depth).
    """
    path = Path(path)
    rgb, alpha, depth, normal, cameras = (
        np.asarray(a) for a in (rgb, alpha, depth, normal, cameras)
    )
    if depth.ndim != 3 or depth.shape[1] != depth.shape[2]:
        raise ValueError(
            f"{path}: depth: expected shape [V, H, H] (square views), got {depth.shape}"
        )
    v, h = depth.shape[:2]
    for name, array, shape in (
        ("rgb", rgb, (v, h, h, 3)),
        ("alpha", alpha, (v, h, h)),
        ("normal", normal, (v, h, h, 3)),
        ("cameras", cameras, (v, 25)),
    ):
        if array.shape != shape:
            raise ValueError(
                f"{path}: {name}: expected shape {shape} ({v} views of {h} x {h} pixels as in "
                f"depth), got {array.shape}"
            )
    if not (np.all(np.isfinite(depth)) and np.all(depth >= 0)):
        raise ValueError(f"{path}: expected finite depth >= 0 (0 = background)")
    if not np.all(np.isfinite(cameras)):
        raise ValueError(f"{path}: expected finite cameras")
    path.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_to_uint8(_tile(rgb)), "RGB").save(
        path / "raw_img.jpg", quality=95, subsampling=0
    )
    Image.fromarray(_to_uint8(_tile(alpha)), "L").save(path / "alpha.jpg", quality=95)
    Image.fromarray(encode_normals(_tile(normal)), "RGB").save(path / "normal.png")
    np.savez_compressed(path / "depth.npz", depth=depth.astype(np.float32))
    np.save(path / "c.npy", cameras.astype(np.float32))
    (path / "caption.txt").write_text(caption, encoding="utf-8")
    (path / "ins.txt").write_text(instance_id, encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Geometry


def unproject_depth(depth: np.ndarray, cameras: np.ndarray) -> np.ndarray:
    """World points [..., H, W, 3] of z-depth maps [..., H, W] seen by c.npy rows [..., 25].

    Each row is [0:16] the row-major 4x4 OpenCV cam2world (x right, y down, +z forward) and
    [16:25] the row-major 3x3 intrinsics normalised by the image size; only fx = K[0,0],
    fy = K[1,1], cx = K[0,2], cy = K[1,2] are used (K[2,2] ~ 1/512 in the data is ignored,
    the skew K[0,1] is 0 in the data and ignored). Pixel (row i, col j) has its centre at
    (x, y) = (j + 0.5, i + 0.5) and its camera point is
        depth * ((x - cx W) / (fx W), (y - cy H) / (fy H), 1),
    mapped to the world by cam2world. Background pixels (depth 0) land on the camera centre:
    mask them (e.g. with alpha) before use.
    """
    depth = np.asarray(depth, dtype=np.float32)
    cameras = np.asarray(cameras, dtype=np.float32)
    if depth.ndim < 2:
        raise ValueError(f"depth: expected shape [..., H, W], got {depth.shape}")
    lead = depth.shape[:-2]
    if cameras.shape != lead + (25,):
        raise ValueError(
            f"cameras: expected shape {lead + (25,)} (one c.npy row per depth map of shape "
            f"{depth.shape}), got {cameras.shape}"
        )
    height, width = depth.shape[-2:]
    cam2world = cameras[..., :16].reshape(lead + (4, 4))
    k = cameras[..., 16:25].reshape(lead + (3, 3))
    fx = k[..., 0, 0] * width
    fy = k[..., 1, 1] * height
    cx = k[..., 0, 2] * width
    cy = k[..., 1, 2] * height
    expand = lambda a: a[..., None, None]
    xs = np.arange(width, dtype=np.float32) + 0.5
    ys = np.arange(height, dtype=np.float32) + 0.5
    ray_x = (xs[None, :] - expand(cx)) / expand(fx)  # [..., 1, W]
    ray_y = (ys[:, None] - expand(cy)) / expand(fy)  # [..., H, 1]
    cam = np.stack(
        np.broadcast_arrays(depth * ray_x, depth * ray_y, depth), axis=-1
    )  # [..., H, W, 3]
    rot = cam2world[..., :3, :3]
    trans = cam2world[..., :3, 3]
    # cam [..., H, W, 3] @ rot^T [..., 1, 3, 3]: a batched matmul (much faster than einsum).
    world = np.matmul(cam, np.swapaxes(rot, -1, -2)[..., None, :, :]) + trans[..., None, None, :]
    return world.astype(np.float32)
