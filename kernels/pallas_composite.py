"""Tile-based Pallas compositor for projected surfels (forward + custom_vjp backward).

What it computes: exactly the per-pixel loop documented in kernels/reference.py
(`composite_dense`), but over the depth-sorted per-tile pair lists built by
ga_jax.rendering.intersect_tiles instead of over all surfels.

Forward kernel (one program per tile_size x tile_size tile, grid = (n_tiles,)):
  * Before the kernel, XLA gathers the data of every pair slot into one packed f32 array
    [M, K] (columns: means2d 2 | transform rows T_u, T_v, T_w 9 | opacity 1 | normal 3 |
    colour D | zero padding up to a power of two; opacity is zeroed for invalid surfels),
    so that the kernel reads one row per pair.  Slots of surfel id -1 are never read: they
    lie outside every tile range.
  * The tile's pixels are a flat [ts*ts] vector (pixel p of tile t is row
    (t // cols) * ts + p // ts, column (t % cols) * ts + p % ts; pixels of the padding
    beyond H x W start "done").  A lax.while_loop walks the slots [start, end) of the tile
    front to back and stops early once every pixel of the tile has hit the transmittance
    stop (or the list ends).
  * Outputs, in a tiled layout [n_tiles, channels, ts*ts] that XLA untiles and crops:
    colour without background (D), final transmittance T, depth, median depth, normal (3),
    distortion; residuals for the backward: running sums M1, M2 (f32) and, per pixel, the
    last slot that was composited (the 2DGS reference's n_contrib) and the slot that set
    the median depth (int32, -1 for none), plus the slot where the tile's loop ended
    (diagnostic, broadcast over the tile's pixels).  Background and alpha = 1 - T are
    applied in XLA (so their gradients come from ordinary autodiff).

Backward kernel (same grid): each tile walks its slots back to front, from the largest
"last composited slot" of its pixels down to `start`, as in the 2DGS reference: the
transmittance before a pair is recovered as T_i = T_{i+1} / (1 - alpha_i), and a per-pixel
suffix sum S = sum_{j>i} w_j phi_j + g_T T_final gives
dL/dalpha_i = T_i phi_i - S / (1 - alpha_i), where
phi_j = g_C.c_j + g_D z_j + g_N.n_j + g_dist (M2 + W m_j^2 - 2 M1 m_j) uses the closed form
distortion = W M2 - M1^2 (W = 1 - T_final, M1 = sum w m, M2 = sum w m^2 over the pixel).
Gradients w.r.t. z (depth, distortion, median), the Gaussian falloff and the filter
(rho3d vs rho2d branch), the ray-splat intersection (u, v) = q_xy / q_z and the cross
product are then chained to the packed columns; pairs with q_z == 0, z < near,
alpha < 1/255, past the pixel's last composited slot, or clamped at alpha_max (zero
gradient to opacity and geometry) contribute nothing.  Each program writes one gradient
row PER PAIR SLOT (one vector store) into an [M, K] array; every used slot belongs to
exactly one tile, so no atomics are needed.  Rows that no program wrote (unused capacity,
and slots after the tile's last composited slot) are masked to zero in XLA, and the
gather's transpose (a scatter-add over surfel ids, i.e. a segment sum) turns the rows into
per-surfel gradients.  At exact ties (rho3d == rho2d, o G == alpha_max), where the
oracle's jnp.minimum splits the gradient in halves, the kernel gives it all to one side
(measure-zero cases).

Kernel-side the code sticks to what the Pallas Triton lowering supports: 1-D vectors whose
size ts*ts is a power of two (tile_size must be a power of two when compiled; 16 gives 256
pixels, 4 warps), scalar loads and stores at dynamic slot indices into whole-array refs,
int32 (not bool) loop carries, and min/max reductions for the early-exit test; the Triton
backend is requested explicitly (compiler_params) so a change of JAX's default GPU backend
does not switch it to Mosaic GPU.

Verification status: the interpret=True path (CPU) is tested against the dense oracle in
tests/kernels/test_pallas_composite.py, and a CPU test lowers the compiled path to Triton IR
for CUDA (jit(...).trace(...).lower(lowering_platforms=("cuda",))), which checks the Triton
lowering rules but not Triton's own compilation nor the kernel's results.  The compiled GPU
path (interpret=False) has NOT been run: no GPU was available when this was written.  The
`gpu`-marked test compares it with interpret mode on a GPU machine.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from kernels.config import TileConfig
from kernels.numerics import hit_depth, ray_splat_uv
from kernels.types import CompositeOutput, Splats, TileIntersections

# Columns of the packed per-slot array (and of the per-slot gradient rows).
_MX, _MY = 0, 1
_TU, _TV, _TW = 2, 5, 8  # three columns each
_OPACITY = 11
_NORMAL = 12  # three columns
_COLOR = 15  # D columns


class _Static(NamedTuple):
    """Everything the kernels need that is static (hashable)."""

    height: int
    width: int
    rows: int
    cols: int
    channels: int
    config: TileConfig
    interpret: bool

    @property
    def tile_pixels(self) -> int:
        return self.config.tile_size * self.config.tile_size

    @property
    def num_tiles(self) -> int:
        return self.rows * self.cols


# Output channels of the forward kernel (in [n_tiles, NF, P]), after the D colour channels.
_O_TRANS, _O_DEPTH, _O_MEDIAN, _O_NORMAL, _O_DIST = 0, 1, 2, 3, 6
_NUM_EXTRA = 7


def _compiler_params(st: _Static):
    """Triton settings for the compiled path, named explicitly so that the kernels keep the
    Triton lowering if a JAX version makes Mosaic GPU the default for pallas_call."""
    if st.interpret:
        return None
    from jax.experimental.pallas import triton as pltriton

    # Two pixels per thread: 4 warps for 16x16 tiles, 1 warp for 8x8 tiles.
    return pltriton.CompilerParams(num_warps=max(1, min(8, st.tile_pixels // 64)), num_stages=1)


def _pixel_coords(st: _Static, tile):
    """Pixel centres (x, y) [P] f32 of a tile and whether they lie inside the image."""
    ts = st.config.tile_size
    pix = lax.iota(jnp.int32, st.tile_pixels)
    tile_row = lax.div(tile, jnp.int32(st.cols))
    tile_col = lax.rem(tile, jnp.int32(st.cols))
    iy = tile_row * ts + lax.div(pix, jnp.int32(ts))
    ix = tile_col * ts + lax.rem(pix, jnp.int32(ts))
    inside = (ix < st.width) & (iy < st.height)
    return ix.astype(jnp.float32) + 0.5, iy.astype(jnp.float32) + 0.5, inside


def _load_pair(packed_ref, i, channels):
    """Scalars of slot i: means2d, the three transform rows, opacity, normal, colour."""
    ld = lambda c: packed_ref[i, c]
    mean = (ld(_MX), ld(_MY))
    t_u = tuple(ld(_TU + k) for k in range(3))
    t_v = tuple(ld(_TV + k) for k in range(3))
    t_w = tuple(ld(_TW + k) for k in range(3))
    normal = tuple(ld(_NORMAL + k) for k in range(3))
    color = tuple(ld(_COLOR + k) for k in range(channels))
    return mean, t_u, t_v, t_w, ld(_OPACITY), normal, color


def _geometry(cfg: TileConfig, px, py, mean, t_u, t_v, t_w, opacity):
    """Per-pixel ray-splat intersection, filter, depth and alpha (the reference's maths)."""
    # k = x T_w - T_u, l = y T_w - T_v (named kv, lv here), q = k x l
    kv = tuple(px * t_w[c] - t_u[c] for c in range(3))
    lv = tuple(py * t_w[c] - t_v[c] for c in range(3))
    q_x = kv[1] * lv[2] - kv[2] * lv[1]
    q_y = kv[2] * lv[0] - kv[0] * lv[2]
    q_z = kv[0] * lv[1] - kv[1] * lv[0]
    hit, u, v, q_z_used, far = ray_splat_uv(q_x, q_y, q_z)
    rho3d = u * u + v * v
    d_x = mean[0] - px
    d_y = mean[1] - py
    rho2d = cfg.filter_inv_square * (d_x * d_x + d_y * d_y)
    use3d = rho3d <= rho2d
    rho = jnp.where(use3d, rho3d, rho2d)
    z = hit_depth(q_x, q_y, q_z, u, v, far, t_w)
    gauss = jnp.exp(-0.5 * rho)
    alpha_raw = opacity * gauss
    alpha = jnp.minimum(cfg.alpha_max, alpha_raw)
    use = hit & (z >= cfg.near) & (alpha >= cfg.alpha_min)
    return dict(kv=kv, lv=lv, q_z=q_z_used, far=far, u=u, v=v, d_x=d_x, d_y=d_y, use3d=use3d,
                z=z, gauss=gauss, alpha_raw=alpha_raw, alpha=alpha, use=use)


def _normalised_depth(cfg: TileConfig, z):
    return cfg.far / (cfg.far - cfg.near) * (1.0 - cfg.near / z)


# --------------------------------------------------------------------------------------
# Forward kernel
# --------------------------------------------------------------------------------------


def _forward_kernel(ranges_ref, packed_ref, out_ref, res_f_ref, res_i_ref, *, st: _Static):
    cfg = st.config
    d = st.channels
    tile = pl.program_id(0)
    start = ranges_ref[tile, 0]
    end = ranges_ref[tile, 1]
    px, py, inside = _pixel_coords(st, tile)
    p = st.tile_pixels
    zeros = jnp.zeros((p,), jnp.float32)
    neg1 = jnp.full((p,), -1, jnp.int32)

    def cond(carry):
        i, done = carry[0], carry[1]
        return (i < end) & (jnp.min(done) == 0)

    def body(carry):
        i, done, trans, color, depth, normal, m1, m2, dist, median, last, med_idx = carry
        mean, t_u, t_v, t_w, opacity, n, c = _load_pair(packed_ref, i, d)
        g = _geometry(cfg, px, py, mean, t_u, t_v, t_w, opacity)
        alpha = g["alpha"]
        use = g["use"] & (done == 0)
        test_trans = trans * (1.0 - alpha)
        stop = use & (test_trans < cfg.transmittance_min)
        contrib = use & ~stop
        done = jnp.where(stop, 1, done)
        w = jnp.where(contrib, alpha * trans, 0.0)
        z = jnp.where(contrib, g["z"], 1.0)
        m = _normalised_depth(cfg, z)
        dist = dist + w * (m * m * (1.0 - trans) + m2 - 2.0 * m * m1)
        depth = depth + w * z
        m1 = m1 + w * m
        m2 = m2 + w * m * m
        set_median = contrib & (trans > 0.5)
        median = jnp.where(set_median, z, median)
        med_idx = jnp.where(set_median, i, med_idx)
        normal = tuple(normal[k] + w * n[k] for k in range(3))
        color = tuple(color[k] + w * c[k] for k in range(d))
        trans = jnp.where(contrib, test_trans, trans)
        last = jnp.where(contrib, i, last)
        return (i + 1, done, trans, color, depth, normal, m1, m2, dist, median, last, med_idx)

    init = (
        start,
        jnp.where(inside, 0, 1).astype(jnp.int32),
        jnp.ones((p,), jnp.float32),
        (zeros,) * d,
        zeros,
        (zeros,) * 3,
        zeros,
        zeros,
        zeros,
        zeros,
        neg1,
        neg1,
    )
    stop_slot, _, trans, color, depth, normal, m1, m2, dist, median, last, med_idx = (
        lax.while_loop(cond, body, init)
    )
    for k in range(d):
        out_ref[k, :] = color[k]
    out_ref[d + _O_TRANS, :] = trans
    out_ref[d + _O_DEPTH, :] = depth
    out_ref[d + _O_MEDIAN, :] = median
    for k in range(3):
        out_ref[d + _O_NORMAL + k, :] = normal[k]
    out_ref[d + _O_DIST, :] = dist
    res_f_ref[0, :] = m1
    res_f_ref[1, :] = m2
    res_i_ref[0, :] = last
    res_i_ref[1, :] = med_idx
    res_i_ref[2, :] = jnp.full((p,), stop_slot, jnp.int32)  # diagnostics: where the loop ended


def _forward(st: _Static, packed, ranges):
    nf = st.channels + _NUM_EXTRA
    p = st.tile_pixels
    n_tiles = st.num_tiles
    whole = lambda shape: pl.BlockSpec(shape, lambda t: (0,) * len(shape))
    per_tile = lambda c: pl.BlockSpec((None, c, p), lambda t: (t, 0, 0))
    return pl.pallas_call(
        functools.partial(_forward_kernel, st=st),
        out_shape=(
            jax.ShapeDtypeStruct((n_tiles, nf, p), jnp.float32),
            jax.ShapeDtypeStruct((n_tiles, 2, p), jnp.float32),
            jax.ShapeDtypeStruct((n_tiles, 3, p), jnp.int32),
        ),
        grid=(n_tiles,),
        in_specs=[whole(ranges.shape), whole(packed.shape)],
        out_specs=(per_tile(nf), per_tile(2), per_tile(3)),
        interpret=st.interpret,
        compiler_params=_compiler_params(st),
        name="surfel_composite_fwd",
    )(ranges, packed)


# --------------------------------------------------------------------------------------
# Backward kernel
# --------------------------------------------------------------------------------------


def _backward_kernel(ranges_ref, packed_ref, out_ref, res_f_ref, res_i_ref, g_ref, grad_ref,
                     *, st: _Static):
    cfg = st.config
    d = st.channels
    tile = pl.program_id(0)
    start = ranges_ref[tile, 0]
    px, py, _ = _pixel_coords(st, tile)

    trans_final = out_ref[d + _O_TRANS, :]
    m1_tot = res_f_ref[0, :]
    m2_tot = res_f_ref[1, :]
    weight_tot = 1.0 - trans_final
    last = res_i_ref[0, :]
    med_idx = res_i_ref[1, :]
    g_color = tuple(g_ref[k, :] for k in range(d))
    g_trans = g_ref[d + _O_TRANS, :]
    g_depth = g_ref[d + _O_DEPTH, :]
    g_median = g_ref[d + _O_MEDIAN, :]
    g_normal = tuple(g_ref[d + _O_NORMAL + k, :] for k in range(3))
    g_dist = g_ref[d + _O_DIST, :]
    dm_scale = cfg.far / (cfg.far - cfg.near) * cfg.near
    tile_last = jnp.max(last)
    columns = lax.iota(jnp.int32, packed_ref.shape[1])

    def cond(carry):
        return carry[0] >= start

    def body(carry):
        i, trans_after, suffix = carry
        mean, t_u, t_v, t_w, opacity, n, c = _load_pair(packed_ref, i, d)
        g = _geometry(cfg, px, py, mean, t_u, t_v, t_w, opacity)
        alpha = g["alpha"]
        contrib = g["use"] & (i <= last)
        one_minus = 1.0 - alpha
        trans = jnp.where(contrib, trans_after / one_minus, trans_after)
        w = alpha * trans
        z = jnp.where(contrib, g["z"], 1.0)
        m = _normalised_depth(cfg, z)
        phi = g_depth * z + g_dist * (m2_tot + weight_tot * m * m - 2.0 * m * m1_tot)
        for k in range(3):
            phi = phi + g_normal[k] * n[k]
        for k in range(d):
            phi = phi + g_color[k] * c[k]
        g_alpha = trans * phi - suffix / one_minus
        suffix = jnp.where(contrib, suffix + w * phi, suffix)

        dm_dz = dm_scale / (z * z)
        g_z = w * (g_depth + g_dist * 2.0 * (weight_tot * m - m1_tot) * dm_dz)
        g_z = g_z + jnp.where(med_idx == i, g_median, 0.0)
        # alpha = min(alpha_max, o G): no gradient to o or G where it is clamped.
        g_alpha = jnp.where(g["alpha_raw"] < cfg.alpha_max, g_alpha, 0.0)
        gauss = g["gauss"]
        g_opacity = g_alpha * gauss
        g_rho = g_alpha * opacity * (-0.5) * gauss

        use3d, near_ray = g["use3d"], ~g["far"]
        u, v, q_z = g["u"], g["v"], g["q_z"]
        # 2D filter branch: rho2d = F |mean - pixel|^2.
        g_rho2d = jnp.where(use3d, 0.0, g_rho) * (2.0 * cfg.filter_inv_square)
        g_mean = (g_rho2d * g["d_x"], g_rho2d * g["d_y"])
        # 3D branch: rho3d = u^2 + v^2. Every pair: z = u T_w.x + v T_w.y + T_w.z (far pairs:
        # u, v and the first two terms are constants, kernels/numerics.py).
        g_u = jnp.where(use3d, g_rho * 2.0 * u, 0.0) + g_z * t_w[0]
        g_v = jnp.where(use3d, g_rho * 2.0 * v, 0.0) + g_z * t_w[1]
        g_u = jnp.where(near_ray, g_u, 0.0)
        g_v = jnp.where(near_ray, g_v, 0.0)
        g_tw_z = (jnp.where(near_ray, g_z * u, 0.0), jnp.where(near_ray, g_z * v, 0.0), g_z)
        # (u, v) = (q_x, q_y) / q_z
        g_q = (g_u / q_z, g_v / q_z, -(g_u * u + g_v * v) / q_z)
        kv, lv = g["kv"], g["lv"]
        # q = k x l: dk = l x g_q, dl = g_q x k
        g_k = (
            lv[1] * g_q[2] - lv[2] * g_q[1],
            lv[2] * g_q[0] - lv[0] * g_q[2],
            lv[0] * g_q[1] - lv[1] * g_q[0],
        )
        g_l = (
            g_q[1] * kv[2] - g_q[2] * kv[1],
            g_q[2] * kv[0] - g_q[0] * kv[2],
            g_q[0] * kv[1] - g_q[1] * kv[0],
        )

        # One gradient row per slot, stored with a single vector store.
        row = [jnp.zeros((packed_ref.shape[1],), jnp.float32)]

        def put(col, value):
            total = jnp.sum(jnp.where(contrib, value, 0.0))
            row[0] = jnp.where(columns == col, total, row[0])

        put(_MX, g_mean[0])
        put(_MY, g_mean[1])
        for a in range(3):
            # k = x T_w - T_u, l = y T_w - T_v
            put(_TU + a, -g_k[a])
            put(_TV + a, -g_l[a])
            put(_TW + a, px * g_k[a] + py * g_l[a] + g_tw_z[a])
            put(_NORMAL + a, w * g_normal[a])
        put(_OPACITY, g_opacity)
        for a in range(d):
            put(_COLOR + a, w * g_color[a])
        grad_ref[i, :] = row[0]
        return i - 1, trans, suffix

    lax.while_loop(cond, body, (tile_last, trans_final, g_trans * trans_final))


def _backward(st: _Static, packed, ranges, out_f, res_f, res_i, g_out):
    nf = st.channels + _NUM_EXTRA
    p = st.tile_pixels
    whole = lambda shape: pl.BlockSpec(shape, lambda t: (0,) * len(shape))
    per_tile = lambda c: pl.BlockSpec((None, c, p), lambda t: (t, 0, 0))
    return pl.pallas_call(
        functools.partial(_backward_kernel, st=st),
        out_shape=jax.ShapeDtypeStruct(packed.shape, jnp.float32),
        grid=(st.num_tiles,),
        in_specs=[
            whole(ranges.shape),
            whole(packed.shape),
            per_tile(nf),
            per_tile(2),
            per_tile(3),
            per_tile(nf),
        ],
        out_specs=whole(packed.shape),
        interpret=st.interpret,
        compiler_params=_compiler_params(st),
        name="surfel_composite_bwd",
    )(ranges, packed, out_f, res_f, res_i, g_out)


# --------------------------------------------------------------------------------------
# custom_vjp plumbing
# --------------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _composite_tiles(st: _Static, packed, ranges, slot_tiles):
    """Tiled per-pixel outputs [n_tiles, D + 7, P] from the packed per-slot data."""
    return _forward(st, packed, ranges)[0]


def _composite_tiles_fwd(st, packed, ranges, slot_tiles):
    out_f, res_f, res_i = _forward(st, packed, ranges)
    return out_f, (packed, ranges, slot_tiles, out_f, res_f, res_i)


def _composite_tiles_bwd(st, residuals, g_out):
    packed, ranges, slot_tiles, out_f, res_f, res_i = residuals
    rows = _backward(st, packed, ranges, out_f, res_f, res_i, g_out)
    # Keep only the rows some program wrote: slots of a tile up to its last composited slot.
    tile_last = jnp.max(res_i[:, 0, :], axis=-1)  # [n_tiles], -1 for tiles that drew nothing
    in_use = slot_tiles < st.num_tiles
    slot = jnp.arange(packed.shape[0], dtype=jnp.int32)
    written = in_use & (slot <= tile_last[jnp.where(in_use, slot_tiles, 0)])
    rows = jnp.where(written[:, None], rows, 0.0)
    return rows, None, None


_composite_tiles.defvjp(_composite_tiles_fwd, _composite_tiles_bwd)


def _pack(splats: Splats, surfel_ids: jax.Array) -> jax.Array:
    """[M, K] per-slot data, K = 15 + D padded to a power of two (the backward kernel stores
    whole rows of that width).  A gather: its transpose is the segment sum over surfels."""
    num = splats.means2d.shape[0]
    opacity = jnp.where(splats.valid, splats.opacities, 0.0)
    columns = [
        splats.means2d.reshape(num, 2),
        splats.transforms.reshape(num, 9),
        opacity.reshape(num, 1),
        splats.normals.reshape(num, 3),
        splats.colors.reshape(num, -1),
    ]
    used = _COLOR + splats.colors.shape[-1]
    width = pl.next_power_of_2(used)
    if width > used:
        columns.append(jnp.zeros((num, width - used), jnp.float32))
    table = jnp.concatenate(columns, axis=-1).astype(jnp.float32)
    return jnp.take(table, jnp.maximum(surfel_ids, 0), axis=0)


def _untile(st: _Static, tiles: jax.Array) -> jax.Array:
    """[n_tiles, C, ts*ts] -> [C, H, W]."""
    ts = st.config.tile_size
    channels = tiles.shape[1]
    img = tiles.reshape(st.rows, st.cols, channels, ts, ts)
    img = img.transpose(2, 0, 3, 1, 4).reshape(channels, st.rows * ts, st.cols * ts)
    return img[:, : st.height, : st.width]


def _loop_end_slots(
    splats: Splats, isect: TileIntersections, height: int, width: int,
    config: TileConfig = TileConfig(), interpret: bool | None = None,  # noqa: B008
) -> jax.Array:
    """[n_tiles] slot where each tile's forward loop stopped (== range end unless it exited
    early because every pixel of the tile had reached the transmittance stop)."""
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    rows, cols = config.grid(height, width)
    st = _Static(height, width, rows, cols, splats.colors.shape[-1], config, bool(interpret))
    packed = _pack(splats, isect.surfel_ids)
    _, _, res_i = _forward(st, packed, isect.tile_ranges.astype(jnp.int32))
    return res_i[:, 2, 0]


def composite_pallas(
    splats: Splats,
    isect: TileIntersections,
    height: int,
    width: int,
    background: jax.Array,
    config: TileConfig = TileConfig(),  # noqa: B008 (frozen dataclass)
    interpret: bool | None = None,
) -> CompositeOutput:
    """Composite one view with the tiled Pallas kernel (differentiable; vmap over views).

    splats: Splats [N] of one view; isect: its intersect_tiles(...) for the same height, width
    and config; background [D].  Differentiable w.r.t. splats.means2d, transforms, opacities,
    normals, colors and background.  interpret=None runs the Pallas interpreter on CPU and
    the compiled kernel elsewhere.
    """
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    background = jnp.asarray(background, jnp.float32)
    rows, cols = config.grid(height, width)
    channels = splats.colors.shape[-1]
    ts = config.tile_size
    if not interpret and ts & (ts - 1):
        raise ValueError(f"the compiled kernel needs a power-of-two tile_size, got {ts}")
    if background.shape != (channels,):
        raise ValueError(f"background: expected shape ({channels},), got {background.shape}")
    if isect.tile_ranges.shape[0] != rows * cols:
        raise ValueError(
            f"isect has {isect.tile_ranges.shape[0]} tiles, expected {rows * cols} for "
            f"{height}x{width} with tile_size {config.tile_size}"
        )
    st = _Static(height, width, rows, cols, channels, config, bool(interpret))
    packed = _pack(splats, isect.surfel_ids)
    ranges = isect.tile_ranges.astype(jnp.int32)
    slot_tiles = isect.tile_ids.astype(jnp.int32)
    tiles = _composite_tiles(st, packed, ranges, slot_tiles)
    img = _untile(st, tiles)
    d = channels
    trans = img[d + _O_TRANS]
    color = jnp.moveaxis(img[:d], 0, -1) + trans[..., None] * background
    return CompositeOutput(
        color=color,
        alpha=1.0 - trans,
        depth=img[d + _O_DEPTH],
        median_depth=img[d + _O_MEDIAN],
        normal=jnp.moveaxis(img[d + _O_NORMAL : d + _O_NORMAL + 3], 0, -1),
        distortion=img[d + _O_DIST],
    )
