"""Optional adapter to an installed JAX CUDA surfel rasterizer.

No such package is on PyPI today. A package exposing the function below (for instance a
local build of a diff-surfel-rasterization JAX binding) is picked up when importable:

    composite_splats(means2d, transforms, opacities, normals, colors, tile_ranges,
                     surfel_ids, height, width, background, near, far) -> dict with keys
                     color, alpha, depth, median_depth, normal, distortion

taking the same per-view layout as kernels.types (transforms as [N, 3, 3] rows T_u, T_v,
T_w; pixel centres at j + 0.5, i + 0.5).
"""

from __future__ import annotations

import importlib

import jax

from kernels.config import TileConfig
from kernels.types import CompositeOutput, Splats, TileIntersections

MODULE_NAMES = ("diff_surfel_rasterization_jax",)
AVAILABLE_WITHOUT_CUDA = ("xla", "pallas", "native", "dense")


def load_cuda_module():
    """The first importable CUDA rasterizer module, else ImportError naming the alternatives."""
    for name in MODULE_NAMES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(
        f"backend 'cuda' needs one of the packages {MODULE_NAMES} (not on PyPI; install a local "
        f"build); available backends: {', '.join(AVAILABLE_WITHOUT_CUDA)}"
    )


def composite_cuda(
    splats: Splats,
    isect: TileIntersections,
    height: int,
    width: int,
    background: jax.Array,
    config: TileConfig = TileConfig(),
) -> CompositeOutput:
    module = load_cuda_module()
    out = module.composite_splats(
        splats.means2d,
        splats.transforms,
        splats.opacities * splats.valid,
        splats.normals,
        splats.colors,
        isect.tile_ranges,
        isect.surfel_ids,
        height,
        width,
        background,
        config.near,
        config.far,
    )
    return CompositeOutput(**{name: out[name] for name in CompositeOutput._fields})
