"""Frozen settings of the surfel compositor, shared by every implementation.

The numeric constants are those of the 2DGS reference rasterizer (diff-surfel-rasterization):
alpha is clamped to 0.99, contributions below 1/255 are skipped, a ray stops before the
surfel that would take its transmittance below 1e-4, and the screen-space low-pass filter
has radius sqrt(2)/2 px (rho2d = 2 |x - centre|^2).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TileConfig:
    """How the image is binned and composited. Hashable: passed as a static argument.

    tile_size: tile edge in pixels (tiles are square). The Pallas kernel runs one program per tile.
    chunk_size: the XLA backend splits each tile's depth-sorted list into chunks of this many
      intersections and composites all chunks of all tiles in parallel.
    near, far: intersections nearer than `near` are skipped; `near`/`far` also define the
      normalised depth m = far/(far-near) * (1 - near/z) used by the distortion term.
    """

    tile_size: int = 16
    chunk_size: int = 32
    near: float = 0.2
    far: float = 100.0
    alpha_max: float = 0.99
    alpha_min: float = 1.0 / 255.0
    transmittance_min: float = 1e-4
    filter_inv_square: float = 2.0

    def __post_init__(self):
        if self.tile_size < 1 or self.chunk_size < 1:
            raise ValueError(f"tile_size and chunk_size must be >= 1, got {self}")
        if not 0.0 < self.near < self.far:
            raise ValueError(f"need 0 < near < far, got near={self.near} far={self.far}")

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Number of tiles (rows, cols) covering an image of this size."""
        return -(-height // self.tile_size), -(-width // self.tile_size)


def default_config(implementation: str) -> TileConfig:
    """The tile settings each implementation runs best with.

    The XLA backend evaluates every (pair, tile pixel) of a chunk, so smaller tiles waste fewer
    evaluations on pixels a small surfel does not reach (faster forward and backward at 8 than
    at 16: docs/benchmarks.md). The Pallas kernel runs one
    program per 16 x 16 tile, as on the reference CUDA rasterizer.
    """
    if implementation == "xla":
        return TileConfig(tile_size=8, chunk_size=16)
    return TileConfig()
