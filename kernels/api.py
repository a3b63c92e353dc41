"""The one public compositing entry point: `composite(..., implementation=...)`."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

from kernels.config import TileConfig
from kernels.types import CompositeOutput, Splats, TileIntersections

IMPLEMENTATIONS = ("xla", "pallas", "native", "dense", "cuda")


def _get(implementation: str) -> Callable:
    if implementation == "xla":
        from kernels.xla_composite import composite_xla

        return composite_xla
    if implementation == "pallas":
        from kernels.pallas_composite import composite_pallas

        return composite_pallas
    if implementation == "native":
        from kernels.native_composite import composite_native

        return composite_native
    if implementation == "dense":
        from kernels.reference import composite_dense

        return lambda splats, isect, h, w, bg, cfg: composite_dense(splats, h, w, bg, cfg)
    if implementation == "cuda":
        from kernels.cuda_adapter import composite_cuda

        return composite_cuda
    raise ValueError(f"implementation: expected one of {IMPLEMENTATIONS}, got {implementation!r}")


@functools.partial(
    jax.jit, static_argnames=("height", "width", "config", "implementation")
)
def composite(
    splats: Splats,  # leading [V] views: fields [V, N, ...]
    isect: TileIntersections | None,  # leading [V]; unused (may be None) for "native"
    height: int,
    width: int,
    background: jax.Array,  # [V, D]
    config: TileConfig = TileConfig(),
    implementation: str = "xla",
) -> CompositeOutput:
    """Composite V views; each field of the result has leading [V]."""
    fn = _get(implementation)
    per_view = lambda args: fn(args[0], args[1], height, width, args[2], config)
    if implementation == "native":  # takes any leading dims: one FFI call for every view
        return fn(splats, isect, height, width, background, config)
    if implementation == "pallas":
        return jax.vmap(per_view)((splats, isect, background))  # views become a grid axis
    # A loop over views: batched gathers and scans are several times slower on CPU than a
    # loop of unbatched ones, and the loop keeps one view's temporaries alive at a time.
    return jax.lax.map(per_view, (splats, isect, background))
