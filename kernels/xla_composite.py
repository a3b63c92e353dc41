"""Tiled surfel compositing in plain XLA (jit/vmap/grad-able): the default backend.

The sorted (tile, depth) pair list of a view is cut into chunks of `chunk_size` consecutive
pairs of one tile, and every chunk of every tile is composited in parallel over the tile's
pixels: work scales with the number of pairs, not with the busiest tile.

Front-to-back compositing is sequential within a tile, so it runs in two passes:
1. For every chunk, sum log(1 - alpha) over its pairs (one fused reduction) and take a
   segmented exclusive prefix over the tile's chunks: the transmittance T at each chunk's
   start, before any early stop.
2. Scan over the chunk's pairs, all chunks at once, starting from that T, with the exact
   per-pixel rules of the reference (skip alpha < 1/255 and z < near; stop before the pair
   that would take T below 1e-4; median depth; one-pass distortion).
If a ray stopped in an earlier chunk, pass 1's T at the chunk start is already below 1e-4
(it multiplies in the stopping pair and more), so pass 2 composites nothing there, which is
exactly the reference's behaviour. Running sums that cross chunks (weights, the distortion's
M1/M2, the median) are combined per tile afterwards.

Gradients come from a hand-written VJP (custom_vjp on the chunk compositor), the 2DGS
reference's back-to-front walk in the chunk layout. With w_i = alpha_i T_i and per-pixel
totals W = sum w, M1 = sum w m, M2 = sum w m^2 (distortion = W M2 - M1^2), a cotangent g
on the outputs gives per pair phi_i = dOut/dw_i = g_W + g_D z_i + g_N.n_i + g_C.c_i
+ g_dist (M2 + W m_i^2 - 2 M1 m_i) and
    dL/dalpha_i = T_i phi_i - S_i / (1 - alpha_i),   S_i = sum_{j > i} w_j phi_j.
phi is linear in the pair's (1, z, n, c, m, m^2), so each chunk's share of S is a linear
combination of the per-chunk sums the forward pass already made: a segmented suffix sum over
the tile's chunks gives S at every chunk's end. A reverse scan over the chunk's pairs then
recovers T_i = T_{i+1} / (1 - alpha_i) from the chunk's final T (a residual) for the pairs up
to the pixel's last composited one (another residual), and chains dL/dalpha_i and dL/dz_i to
the packed geometry with jax.vjp of the per-pair function. No per-pair array is materialised
in either direction (autodiff through pass 2's scan kept every step's carries: 3-10x the
forward's time; docs/benchmarks.md).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from kernels.config import TileConfig
from kernels.numerics import hit_depth, ray_splat_uv
from kernels.types import CompositeOutput, Splats, TileIntersections

# Packed per-pair geometry: means2d (2), transform rows (9), opacity (1).
_GEOM = 12
# Chunks per group of the loops over chunks: bounds the temporaries of both passes.
_GROUP_CHUNKS = 2048


def _pair_alpha_depth(geom: jax.Array, px: jax.Array, py: jax.Array, cfg: TileConfig):
    """alpha (0 where the pair is skipped) and hit depth for pairs broadcast from geom [..., 12]
    against pixel centres px, py."""
    g = [geom[..., i] for i in range(_GEOM)]
    mx, my, tu0, tu1, tu2, tv0, tv1, tv2, tw0, tw1, tw2, opacity = g
    k0, k1, k2 = px * tw0 - tu0, px * tw1 - tu1, px * tw2 - tu2
    l0, l1, l2 = py * tw0 - tv0, py * tw1 - tv1, py * tw2 - tv2
    q0 = k1 * l2 - k2 * l1
    q1 = k2 * l0 - k0 * l2
    q2 = k0 * l1 - k1 * l0
    hit, u, v, _, far = ray_splat_uv(q0, q1, q2)
    rho3d = u * u + v * v
    dx, dy = mx - px, my - py
    rho2d = cfg.filter_inv_square * (dx * dx + dy * dy)
    rho = jnp.where(rho3d <= rho2d, rho3d, rho2d)
    z = hit_depth(q0, q1, q2, u, v, far, (tw0, tw1, tw2))
    alpha = jnp.minimum(cfg.alpha_max, opacity * jnp.exp(-0.5 * rho))
    keep = hit & (z >= cfg.near) & (alpha >= cfg.alpha_min)
    return jnp.where(keep, alpha, 0.0), jnp.where(keep, z, 1.0)


def _segmented_exclusive_sum(values: jax.Array, starts: jax.Array) -> jax.Array:
    """Exclusive prefix sum over axis 0 restarting where starts [n] is True."""

    def combine(a, b):
        flag_a, val_a = a
        flag_b, val_b = b
        flag_b_b = flag_b.reshape(flag_b.shape + (1,) * (val_b.ndim - flag_b.ndim))
        return flag_a | flag_b, jnp.where(flag_b_b, val_b, val_a + val_b)

    _, inclusive = jax.lax.associative_scan(combine, (starts, values))
    return inclusive - values


def chunk_layout(isect: TileIntersections, num_tiles: int, chunk_size: int):
    """Cut each tile's pair range into chunks; returns (slot ids [n, C], chunk tiles [n],
    chunk is first of its tile [n]) with a static n = ceil(M / C) + num_tiles."""
    capacity = isect.surfel_ids.shape[0]
    num_chunks = -(-capacity // chunk_size) + num_tiles
    start, end = isect.tile_ranges[:, 0], isect.tile_ranges[:, 1]
    per_tile = (end - start + chunk_size - 1) // chunk_size
    chunk_end = jnp.cumsum(per_tile)
    j = jnp.arange(num_chunks, dtype=jnp.int32)
    tile = jnp.minimum(jnp.searchsorted(chunk_end, j, side="right"), num_tiles - 1)
    used = j < chunk_end[-1]
    first_of_tile = chunk_end[tile] - per_tile[tile]
    slots = start[tile, None] + (j - first_of_tile)[:, None] * chunk_size
    slots = slots + jnp.arange(chunk_size, dtype=jnp.int32)
    slot_ok = used[:, None] & (slots < end[tile, None])
    slots = jnp.where(slot_ok, slots, -1)
    chunk_tile = jnp.where(used, tile, num_tiles)
    return slots, chunk_tile, (j == first_of_tile) & used


def composite_xla(
    splats: Splats,
    isect: TileIntersections,
    height: int,
    width: int,
    background: jax.Array,  # [D]
    config: TileConfig = TileConfig(),
) -> CompositeOutput:
    """Composite one view's splats [N] over its sorted tile pairs. See module docstring."""
    cfg = config
    rows, cols = cfg.grid(height, width)
    num_tiles, ts = rows * cols, cfg.tile_size

    slots, chunk_tile, first = chunk_layout(isect, num_tiles, cfg.chunk_size)
    sid = jnp.where(slots >= 0, isect.surfel_ids[jnp.maximum(slots, 0)], -1)
    present = sid >= 0
    sid = jnp.maximum(sid, 0)
    opacity = jnp.where(present & splats.valid[sid], splats.opacities[sid], 0.0)
    geom = jnp.concatenate(
        [splats.means2d[sid], splats.transforms[sid].reshape(*sid.shape, 9), opacity[..., None]],
        axis=-1,
    )  # [n, C, 12]
    feats = jnp.concatenate([splats.normals[sid], splats.colors[sid]], axis=-1)  # [n, C, 3+D]

    # Pixel centres of each chunk's tile, [n, P].
    local = jnp.arange(ts * ts, dtype=jnp.int32)
    tile = jnp.minimum(chunk_tile, num_tiles - 1)
    px = ((tile % cols) * ts)[:, None] + local % ts + 0.5
    py = ((tile // cols) * ts)[:, None] + local // ts + 0.5
    px, py = px.astype(geom.dtype), py.astype(geom.dtype)

    acc_t, dist_t, med_t = _composite_chunks(cfg, num_tiles, geom, feats, px, py, first, chunk_tile)

    alpha_t = acc_t[..., 0]
    color_t = acc_t[..., 5:] + (1.0 - alpha_t)[..., None] * background

    def to_image(x):  # [n_tiles, P, ...] -> [H, W, ...]
        x = x.reshape(rows, cols, ts, ts, *x.shape[2:])
        x = jnp.swapaxes(x, 1, 2).reshape(rows * ts, cols * ts, *x.shape[4:])
        return x[:height, :width]

    return CompositeOutput(
        color=to_image(color_t),
        alpha=to_image(alpha_t),
        depth=to_image(acc_t[..., 1]),
        median_depth=to_image(med_t),
        normal=to_image(acc_t[..., 2:5]),
        distortion=to_image(dist_t),
    )


def _grouping(num_chunks: int):
    """(grouped, ungroup): [n, ...] <-> [groups, group, ...] with zero padding."""
    group = min(_GROUP_CHUNKS, num_chunks)
    num_groups = -(-num_chunks // group)
    pad = num_groups * group - num_chunks

    def grouped(x):
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape((num_groups, group) + x.shape[1:])

    def ungroup(x):
        return x.reshape((num_groups * group,) + x.shape[2:])[:num_chunks]

    return grouped, ungroup


def _tile_sum(x: jax.Array, chunk_tile: jax.Array, num_tiles: int) -> jax.Array:
    """Per-chunk values [n, ...] summed per tile -> [n_tiles, ...] (unused chunks dropped)."""
    return jax.ops.segment_sum(x, chunk_tile, num_segments=num_tiles, indices_are_sorted=True)


def _normalised_depth(cfg: TileConfig, z: jax.Array) -> jax.Array:
    return cfg.far / (cfg.far - cfg.near) * (1.0 - cfg.near / z)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _composite_chunks(cfg, num_tiles, geom, feats, px, py, first, chunk_tile):
    """Per-tile sums [n_tiles, P, 5 + D] (weight, w z, w n, w c), distortion and median depth
    [n_tiles, P] of the chunk layout; differentiable w.r.t. geom and feats (hand-written VJP)."""
    return _chunks_forward(cfg, num_tiles, geom, feats, px, py, first, chunk_tile)[0]


def _chunks_forward(cfg: TileConfig, num_tiles, geom, feats, px, py, first, chunk_tile):
    grouped, ungroup = _grouping(geom.shape[0])

    def pass1(args):
        g, x, y = args
        alpha, _ = _pair_alpha_depth(g[:, :, None, :], x[:, None], y[:, None], cfg)
        return jnp.sum(jnp.log1p(-alpha), axis=1)  # [group, P]

    log_keep = ungroup(jax.lax.map(pass1, (grouped(geom), grouped(px), grouped(py))))
    trans_start = jnp.exp(_segmented_exclusive_sum(log_keep, first))

    def pass2(args):
        g_all, f_all, x, y, trans = args

        def step(carry, pair):
            trans, done, weight, wz, feat, m1, m2, dist, med, med_k, last_k = carry
            g, f, k = pair  # [group, 12], [group, 3 + D], []
            alpha, z = _pair_alpha_depth(g[:, None, :], x, y, cfg)
            use = (alpha > 0) & ~done
            test_trans = trans * (1.0 - alpha)
            stop = use & (test_trans < cfg.transmittance_min)
            contrib = use & ~stop
            w = jnp.where(contrib, alpha * trans, 0.0)
            m = _normalised_depth(cfg, z)
            dist = dist + w * (m * m * (1.0 - trans) + m2 - 2.0 * m * m1)
            weight, wz = weight + w, wz + w * z
            feat = feat + w[..., None] * f[:, None, :]
            m1, m2 = m1 + w * m, m2 + w * m * m
            at_median = contrib & (trans > 0.5)
            med = jnp.where(at_median, z, med)
            med_k = jnp.where(at_median, k, med_k)
            last_k = jnp.where(contrib, k, last_k)
            trans = jnp.where(contrib, test_trans, trans)
            carry = (trans, done | stop, weight, wz, feat, m1, m2, dist, med, med_k, last_k)
            return carry, None

        zeros = jnp.zeros_like(trans)
        none = jnp.full(trans.shape, -1, jnp.int32)
        init = (
            trans,
            trans < cfg.transmittance_min,
            zeros,
            zeros,
            jnp.zeros(trans.shape + f_all.shape[-1:], trans.dtype),
            zeros,
            zeros,
            zeros,
            zeros,
            none,
            none,
        )
        pairs = (
            jnp.swapaxes(g_all, 0, 1),
            jnp.swapaxes(f_all, 0, 1),
            jnp.arange(g_all.shape[1], dtype=jnp.int32),
        )
        carry, _ = jax.lax.scan(step, init, pairs)
        return (carry[0],) + carry[2:]

    outs = jax.lax.map(
        pass2, (grouped(geom), grouped(feats), grouped(px), grouped(py), grouped(trans_start))
    )
    trans_end, weight, wz, feat, m1, m2, dist, med, med_k, last_k = (ungroup(o) for o in outs)
    acc = jnp.concatenate([weight[..., None], wz[..., None], feat], axis=-1)
    shape = weight.shape

    # Cross-chunk terms of the distortion: pairs in earlier chunks of the same tile.
    m1_prev = _segmented_exclusive_sum(m1, first)
    m2_prev = _segmented_exclusive_sum(m2, first)
    dist = dist + m2_prev * weight - 2.0 * m1_prev * m1

    acc_t, dist_t = (_tile_sum(x, chunk_tile, num_tiles) for x in (acc, dist))
    # Median: the last chunk of the tile that set one.
    chunk_idx = jnp.arange(shape[0], dtype=jnp.int32)[:, None]
    med_chunk = jax.ops.segment_max(
        jnp.where(med_k >= 0, chunk_idx, -1),
        chunk_tile,
        num_segments=num_tiles,
        indices_are_sorted=True,
    )
    pix = jnp.arange(shape[1])[None, :]
    med_t = jnp.where(med_chunk >= 0, med[jnp.maximum(med_chunk, 0), pix], 0.0)

    residuals = dict(
        geom=geom,
        feats=feats,
        px=px,
        py=py,
        first=first,
        chunk_tile=chunk_tile,
        trans_end=trans_end,
        last_k=last_k,
        med_k=med_k,
        med_chunk=med_chunk,
        acc=acc,
        m1=m1,
        m2=m2,
    )
    return (acc_t, dist_t, med_t), residuals


def _chunks_bwd(cfg, num_tiles, r, cotangents):
    g_acc_t, g_dist_t, g_med_t = cotangents
    chunk_tile, first = r["chunk_tile"], r["first"]
    num_chunks = chunk_tile.shape[0]
    used = (chunk_tile < num_tiles)[:, None]
    tile = jnp.minimum(chunk_tile, num_tiles - 1)

    def per_chunk(x):  # per-tile [n_tiles, P, ...] -> per-chunk [n, P, ...], 0 when unused
        x = x[tile]
        return jnp.where(used.reshape(used.shape + (1,) * (x.ndim - 2)), x, 0.0)

    g_acc, g_dist = per_chunk(g_acc_t), per_chunk(g_dist_t)
    g_med = per_chunk(g_med_t)
    # The pixel totals W, M1, M2 of each chunk's tile.
    acc, m1, m2 = r["acc"], r["m1"], r["m2"]
    weight_c, m1_c, m2_c = (
        per_chunk(_tile_sum(x, chunk_tile, num_tiles)) for x in (acc[..., 0], m1, m2)
    )
    is_med_chunk = r["med_chunk"][tile] == jnp.arange(num_chunks, dtype=jnp.int32)[:, None]
    med_k = jnp.where(is_med_chunk & used, r["med_k"], -1)

    # S at each chunk's end: sum of w phi over the later chunks of the tile. phi is linear in
    # the pair's (1, z, n, c, m, m^2), so a chunk's share comes from its forward sums.
    chunk_share = jnp.sum(g_acc * acc, axis=-1) + g_dist * (
        m2_c * acc[..., 0] + weight_c * m2 - 2.0 * m1_c * m1
    )
    inclusive = _segmented_exclusive_sum(chunk_share, first) + chunk_share
    tile_total = _tile_sum(chunk_share, chunk_tile, num_tiles)
    suffix_end = jnp.where(used, tile_total[tile] - inclusive, 0.0)

    grouped, ungroup = _grouping(num_chunks)
    m_scale = cfg.far / (cfg.far - cfg.near)

    def backward(args):
        (
            g_all,
            f_all,
            x,
            y,
            trans_end,
            suffix,
            last_k,
            med_k,
            g_acc,
            g_dist,
            g_med,
            w_tot,
            m1_tot,
            m2_tot,
        ) = args
        g_w, g_wz, g_feat = g_acc[..., 0], g_acc[..., 1], g_acc[..., 2:]

        def step(carry, pair):
            trans_after, suffix = carry
            g, f, k = pair  # [group, 12], [group, 3 + D], []

            def alpha_depth(g):
                return _pair_alpha_depth(g[:, None, :], x, y, cfg)

            (alpha, z_raw), pair_vjp = jax.vjp(alpha_depth, g)
            contrib = (alpha > 0) & (k <= last_k)
            one_minus = 1.0 - alpha
            trans = jnp.where(contrib, trans_after / one_minus, trans_after)
            w = jnp.where(contrib, alpha * trans, 0.0)
            z = jnp.where(contrib, z_raw, 1.0)
            m = _normalised_depth(cfg, z)
            phi = (
                g_w
                + g_wz * z
                + jnp.sum(g_feat * f[:, None, :], axis=-1)
                + g_dist * (m2_tot + w_tot * m * m - 2.0 * m * m1_tot)
            )
            g_alpha = jnp.where(contrib, trans * phi - suffix / one_minus, 0.0)
            suffix = suffix + w * phi
            dm_dz = m_scale * cfg.near / (z * z)
            g_z = w * (g_wz + g_dist * 2.0 * (w_tot * m - m1_tot) * dm_dz)
            g_z = g_z + jnp.where(med_k == k, g_med, 0.0)
            (g_geom,) = pair_vjp((g_alpha, g_z))
            g_f = jnp.einsum("gp,gpc->gc", w, g_feat)
            return (trans, suffix), (g_geom, g_f)

        pairs = (
            jnp.swapaxes(g_all, 0, 1),
            jnp.swapaxes(f_all, 0, 1),
            jnp.arange(g_all.shape[1], dtype=jnp.int32),
        )
        _, (g_geom, g_f) = jax.lax.scan(step, (trans_end, suffix), pairs, reverse=True)
        return jnp.swapaxes(g_geom, 0, 1), jnp.swapaxes(g_f, 0, 1)

    args = (
        r["geom"],
        r["feats"],
        r["px"],
        r["py"],
        r["trans_end"],
        suffix_end,
        r["last_k"],
        med_k,
        g_acc,
        g_dist,
        g_med,
        weight_c,
        m1_c,
        m2_c,
    )
    g_geom, g_feats = jax.lax.map(backward, tuple(grouped(a) for a in args))
    return ungroup(g_geom), ungroup(g_feats), None, None, None, None


_composite_chunks.defvjp(_chunks_forward, _chunks_bwd)
