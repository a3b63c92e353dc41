"""Dense all-pairs surfel compositor: the test oracle for every other implementation.

Every pixel is tested against every surfel, with no tiles, in plain jnp. It follows the
per-pixel loop of the 2DGS reference rasterizer at the commit GaussianAnything installs,
hbb1/diff-surfel-rasterization e0ed020 ("fix near cull", 2024-11-10), `renderCUDA` in
cuda_rasterizer/forward.cu, step by step, so it also documents the maths:

For a pixel centre (x, y) and a surfel with transform rows T_u, T_v, T_w (splat -> pixel):
  k = x T_w - T_u,  l = y T_w - T_v,  q = k x l      (skip the pair when q_z == 0)
  (u, v) = (q_x / q_z, q_y / q_z)                   ray-splat intersection, splat coords
  rho3d = u^2 + v^2
  rho2d = 2 |(x, y) - centre|^2                      low-pass filter, radius sqrt(2)/2 px
  rho = min(rho3d, rho2d)
  z = u T_w.x + v T_w.y + T_w.z                      camera z of the hit, for EVERY pair
  alpha = min(0.99, o exp(-rho / 2));  skip if z < near or alpha < 1/255
Front to back in order of centre depth (ties by surfel index), T = 1:
  if T (1 - alpha) < 1e-4: stop (this surfel is not composited)
  w = alpha T;  C += w c;  D += w z;  N += w n
  m = far / (far - near) (1 - near / z)
  distortion += w (m^2 (1 - T) + M2 - 2 m M1);  M1 += w m;  M2 += w m^2
  if T > 0.5: median = z
  T *= 1 - alpha
Output colour = C + T background, alpha = 1 - T.

The lines of forward.cu at e0ed020 behind the depth rule:
    // compute depth
    float depth = (s.x * Tw.x + s.y * Tw.y) + Tw.z;
    // if a point is too small, its depth is not reliable?
    // depth = (rho3d <= rho2d) ? depth : Tw.z
    if (depth < near_n) continue;
(before that commit the centre depth Tw.z was used where the filter won). The filter's
centre is the surfel's `means2d`: the centre of the screen bounding box of the 3-sigma
ellipse u^2 + v^2 = 9, `compute_aabb(T, cutoff = 3.0f, ...)` in preprocessCUDA (TIGHTBBOX 0),
computed in ga_jax.rendering.project. Rays nearly parallel to the splat: kernels/numerics.py.

Where every ga_jax backend deliberately differs from that rasterizer (tests: the per-pixel loop
transcribed from it in tests/kernels/surfel_loop_e0ed020.py agrees with every backend within
1e-4, tests/kernels/test_reference_commit.py):
- Which pixels a surfel is evaluated on: every pixel where its alpha can reach 1/255. The
  reference evaluates it only on the 16 x 16 tiles its 3-sigma box (radius >= 3 px)
  touches, and drops the pixels beyond, where alpha is at most o exp(-9/2) = 0.011 o.
- A surfel whose 3-sigma disk (or its alpha >= 1/255 disk) reaches the camera plane z = 0
  projects to an unbounded conic and is culled; the reference culls it only when the conic
  is degenerate, and evaluates it on the tiles of the box its formula gives for a hyperbola.
- Gradients are the exact derivatives of these outputs. The reference's backward, where the
  filter wins, passes the depth's gradient to T_w as (u, v, 1) without its path through u, v.
- Rays nearly parallel to the splat (|u| or |v| > 1e6) take constant u, v and their hit
  depth from q without gradient (kernels/numerics.py); the reference divides as it comes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from kernels.config import TileConfig
from kernels.numerics import hit_depth, ray_splat_uv
from kernels.types import CompositeOutput, Splats


def pixel_centers(height: int, width: int, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """x, y of every pixel centre, row-major, each [H*W]."""
    ys, xs = jnp.meshgrid(
        jnp.arange(height, dtype=dtype) + 0.5,
        jnp.arange(width, dtype=dtype) + 0.5,
        indexing="ij",
    )
    return xs.reshape(-1), ys.reshape(-1)


@functools.partial(jax.jit, static_argnames=("height", "width", "config"))
def composite_dense(
    splats: Splats,
    height: int,
    width: int,
    background: jax.Array,  # [D]
    config: TileConfig = TileConfig(),
) -> CompositeOutput:
    """Composite every surfel at every pixel (O(H W N)); differentiable by autodiff.
    Outputs have the dtype of the transforms (float64 under jax_enable_x64 if they are)."""
    cfg = config
    dtype = splats.transforms.dtype
    px, py = pixel_centers(height, width, dtype)
    num_pixels = px.shape[0]
    channels = splats.colors.shape[-1]
    sort_key = jnp.where(splats.valid, splats.depths, jnp.inf)
    order = jnp.argsort(sort_key, stable=True)

    def step(carry, i):
        trans, done, color, depth, normal, m1, m2, dist, median = carry
        t_u, t_v, t_w = splats.transforms[i, 0], splats.transforms[i, 1], splats.transforms[i, 2]
        k = px[:, None] * t_w - t_u
        l = py[:, None] * t_w - t_v
        q = jnp.cross(k, l)
        hit, u, v, _, far = ray_splat_uv(q[:, 0], q[:, 1], q[:, 2])
        rho3d = u * u + v * v
        d_x = splats.means2d[i, 0] - px
        d_y = splats.means2d[i, 1] - py
        rho2d = cfg.filter_inv_square * (d_x * d_x + d_y * d_y)
        rho = jnp.minimum(rho3d, rho2d)
        z = hit_depth(q[:, 0], q[:, 1], q[:, 2], u, v, far, (t_w[0], t_w[1], t_w[2]))
        alpha = jnp.minimum(cfg.alpha_max, splats.opacities[i] * jnp.exp(-0.5 * rho))
        use = splats.valid[i] & hit & (z >= cfg.near) & (alpha >= cfg.alpha_min) & ~done
        test_trans = trans * (1.0 - alpha)
        stop = use & (test_trans < cfg.transmittance_min)
        contrib = use & ~stop
        done = done | stop
        w = jnp.where(contrib, alpha * trans, 0.0)
        z_safe = jnp.where(contrib, z, 1.0)
        m = cfg.far / (cfg.far - cfg.near) * (1.0 - cfg.near / z_safe)
        dist = dist + w * (m * m * (1.0 - trans) + m2 - 2.0 * m * m1)
        depth = depth + w * z_safe
        m1 = m1 + w * m
        m2 = m2 + w * m * m
        median = jnp.where(contrib & (trans > 0.5), z_safe, median)
        normal = normal + w[:, None] * splats.normals[i]
        color = color + w[:, None] * splats.colors[i]
        trans = jnp.where(contrib, test_trans, trans)
        return (trans, done, color, depth, normal, m1, m2, dist, median), None

    zeros = jnp.zeros((num_pixels,), dtype)
    init = (
        jnp.ones((num_pixels,), dtype),
        jnp.zeros((num_pixels,), bool),
        jnp.zeros((num_pixels, channels), dtype),
        zeros,
        jnp.zeros((num_pixels, 3), dtype),
        zeros,
        zeros,
        zeros,
        zeros,
    )
    (trans, _, color, depth, normal, _, _, dist, median), _ = jax.lax.scan(step, init, order)
    color = color + trans[:, None] * background.astype(dtype)
    hw = (height, width)
    return CompositeOutput(
        color=color.reshape(*hw, channels),
        alpha=(1.0 - trans).reshape(hw),
        depth=depth.reshape(hw),
        median_depth=median.reshape(hw),
        normal=normal.reshape(*hw, 3),
        distortion=dist.reshape(hw),
    )
