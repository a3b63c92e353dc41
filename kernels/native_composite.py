"""Native CPU compositor: the C++ kernel in kernels/native/surfel_cpu.cc as XLA FFI calls.

The fast backend on CPU. It bins and sorts the splats itself (no TileIntersections, no static
pair capacity), walks each tile's depth-sorted list front to back visiting only the pixels
inside each splat's screen box, stops a tile when all its rays are saturated, and has a
hand-written backward pass (a back-to-front walk, as the 2DGS reference's CUDA backward).
Tiles run on `GA_JAX_NATIVE_THREADS` threads (default: every core).

The shared library is compiled on first use with the system C++ compiler (`CXX`, else g++ or
c++) against the XLA FFI headers that ship with jaxlib, and cached under
`GA_JAX_CACHE` (default ~/.cache/ga_jax) keyed by the source, flags and CPU. Without a
compiler, `load_library` raises ImportError naming the other backends.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from kernels.config import TileConfig
from kernels.types import CompositeOutput, Splats

SOURCE = Path(__file__).parent / "native" / "surfel_cpu.cc"
# -fno-trapping-math lets GCC vectorise the branch-free pixel loops (it may then evaluate a
# division whose result a select discards); it changes no result.
FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-std=c++17", "-shared", "-fPIC", "-pthread")
TARGETS = {"ga_surfel_forward": "GaSurfelForward", "ga_surfel_backward": "GaSurfelBackward"}
OTHER_BACKENDS = "xla, pallas, dense"
MAX_TILE = 64  # kMaxTile in the C++ source


def _not_on_cpu() -> str | None:
    if jax.default_backend() != "cpu":
        return (f"backend 'native' runs on the CPU only (default backend: "
                f"{jax.default_backend()}); use 'pallas' or 'xla'")
    return None


def available() -> str | None:
    """None when the backend can run here, else the reason it cannot (for skips and errors)."""
    if find_compiler() is None:
        return _not_on_cpu() or "backend 'native' needs a C++ compiler (g++ or $CXX)"
    return _not_on_cpu()


def find_compiler() -> str | None:
    """The C++ compiler to build with: $CXX, else g++, c++ or clang++ on PATH (None if none)."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _compiler() -> str:
    name = find_compiler()
    if name:
        return name
    raise ImportError(
        "backend 'native' needs a C++ compiler (set CXX or install g++); available backends: "
        + OTHER_BACKENDS
    )


def _cpu_name() -> str:
    """The first CPU's model name and instruction-set flags (-march=native code is only
    valid on a CPU with the same flags)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = ("model name", "flags")
    found = {}
    for line in lines:
        key = line.split(":", 1)[0].strip()
        if key in wanted and key not in found:
            found[key] = line
    return "\n".join(found.get(key, "") for key in wanted) or platform.machine()


def library_path() -> Path:
    """Where the compiled library for this source, compiler, CPU and jaxlib lives."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), _compiler().encode(),
                 _cpu_name().encode(), jax.__version__.encode()):
        key.update(part)
    cache = Path(os.environ.get("GA_JAX_CACHE", Path.home() / ".cache" / "ga_jax"))
    return cache / "native" / f"surfel_cpu_{key.hexdigest()[:16]}.so"


def _writable(path: Path) -> Path:
    """path, or the same name under the system temp dir when its folder cannot be created."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    except OSError:
        return Path(tempfile.gettempdir()) / "ga_jax" / path.parent.name / path.name


def build(path: Path) -> None:
    """Compile SOURCE into path (atomically: concurrent builds cannot leave half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    cmd = [_compiler(), *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", tmp]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        os.unlink(tmp)
        raise ImportError(
            f"backend 'native': compiling {SOURCE} failed ({' '.join(cmd)}):\n"
            f"{result.stderr[-4000:]}\navailable backends: {OTHER_BACKENDS}"
        )
    os.replace(tmp, path)


@functools.cache
def load_library() -> None:
    """Build (once per machine) and register the FFI targets with XLA's CPU platform."""
    path = _writable(library_path())
    if not path.exists():
        build(path)
    lib = ctypes.cdll.LoadLibrary(str(path))
    for target, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")


def _threads() -> int:
    value = os.environ.get("GA_JAX_NATIVE_THREADS")
    if value is None:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"GA_JAX_NATIVE_THREADS: expected a positive integer, got {value!r}")
    return int(value)


def _attrs(cfg: TileConfig, height: int, width: int) -> dict:
    f32 = np.float32
    return dict(
        height=np.int64(height),
        width=np.int64(width),
        tile_size=np.int64(cfg.tile_size),
        threads=np.int64(_threads()),
        near=f32(cfg.near),
        far=f32(cfg.far),
        alpha_max=f32(cfg.alpha_max),
        alpha_min=f32(cfg.alpha_min),
        trans_min=f32(cfg.transmittance_min),
        filter_inv_square=f32(cfg.filter_inv_square),
    )


def _splat_args(means2d, transforms, normals, opacities, colors, depths, extents, valid):
    lead = opacities.shape  # [..., N]
    return (
        means2d,
        transforms.reshape(lead + (9,)),
        depths,
        normals,
        opacities,
        colors,
        extents,
        valid.astype(jnp.uint8),
    )


def _forward_call(cfg, height, width, args):
    load_library()
    lead = args[4].shape[:-1]
    image = lead + (height, width)
    f32, i32 = jnp.float32, jnp.int32
    channels = args[5].shape[-1]
    out_types = [
        jax.ShapeDtypeStruct(image + (channels,), f32),  # color
        *[jax.ShapeDtypeStruct(image, f32)] * 3,  # alpha, depth, median
        jax.ShapeDtypeStruct(image + (3,), f32),  # normal
        *[jax.ShapeDtypeStruct(image, f32)] * 4,  # distortion, final T, M1, M2
        *[jax.ShapeDtypeStruct(image, i32)] * 2,  # last pair, median pair
        jax.ShapeDtypeStruct(lead, i32),  # pairs
    ]
    call = jax.ffi.ffi_call("ga_surfel_forward", out_types, vmap_method="broadcast_all")
    return call(*args, **_attrs(cfg, height, width))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _composite(cfg, height, width, means2d, transforms, normals, opacities, colors, aux):
    """(color without background, alpha, depth, median, normal, distortion, pairs)."""
    return _composite_fwd(cfg, height, width, means2d, transforms, normals, opacities, colors,
                          aux)[0]


def _composite_fwd(cfg, height, width, means2d, transforms, normals, opacities, colors, aux):
    args = _splat_args(means2d, transforms, normals, opacities, colors, *aux)
    outs = _forward_call(cfg, height, width, args)
    color, alpha, depth, median, normal, dist, final_t, m1, m2, last, med_k, pairs = outs
    primal = (color, alpha, depth, median, normal, dist, pairs)
    return primal, (args, (final_t, alpha, m1, m2, last, med_k))


def _composite_bwd(cfg, height, width, residuals, cotangents):
    args, saved = residuals
    g_color, g_alpha, g_depth, g_median, g_normal, g_dist, _ = cotangents
    out_types = [jax.ShapeDtypeStruct(a.shape, jnp.float32) for a in (args[0], args[1], args[3],
                                                                       args[4], args[5])]
    call = jax.ffi.ffi_call("ga_surfel_backward", out_types, vmap_method="broadcast_all")
    cot = [jnp.asarray(c, jnp.float32) for c in (g_color, g_alpha, g_depth, g_median, g_normal,
                                                  g_dist)]
    d_means, d_transforms, d_normals, d_opacities, d_colors = call(
        *args, *saved, *cot, **_attrs(cfg, height, width)
    )
    d_transforms = d_transforms.reshape(d_transforms.shape[:-1] + (3, 3))
    return d_means, d_transforms, d_normals, d_opacities, d_colors, None


_composite.defvjp(_composite_fwd, _composite_bwd)


def composite_native_views(
    splats: Splats,  # fields [..., N, ...]
    height: int,
    width: int,
    background: jax.Array,  # [..., D]
    config: TileConfig = TileConfig(),
) -> tuple[CompositeOutput, jax.Array]:
    """Composite every view in one call; returns (outputs with leading [...], pairs [...]).

    pairs counts the surfel-tile pairs of each view (what the tiled backends call intersections).
    """
    if _not_on_cpu():
        raise ValueError(_not_on_cpu())
    if not 1 <= config.tile_size <= MAX_TILE:
        raise ValueError(f"config.tile_size: backend 'native' takes 1..{MAX_TILE}, "
                         f"got {config.tile_size}")
    aux = tuple(jax.lax.stop_gradient(x) for x in (splats.depths, splats.extents, splats.valid))
    color, alpha, depth, median, normal, dist, pairs = _composite(
        config, height, width, splats.means2d, splats.transforms, splats.normals,
        splats.opacities, splats.colors, aux,
    )
    # Background outside the kernel: its gradient (and the alpha's share) come from autodiff.
    color = color + (1.0 - alpha)[..., None] * background[..., None, None, :]
    out = CompositeOutput(color=color, alpha=alpha, depth=depth, median_depth=median,
                          normal=normal, distortion=dist)
    return out, pairs


def composite_native(splats, isect, height, width, background, config=TileConfig()):
    """kernels.api's signature, for one view or many (leading dims on every field and on the
    background); isect is ignored: the kernel bins the splats itself."""
    del isect
    return composite_native_views(splats, height, width, background, config)[0]
