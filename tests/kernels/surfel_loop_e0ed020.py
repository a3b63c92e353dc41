"""An independent surfel renderer transcribed from the 2DGS reference rasterizer.

Source: hbb1/diff-surfel-rasterization at e0ed020 ("fix near cull", 2024-11-10), the HEAD that
GaussianAnything installs: `preprocessCUDA`, `compute_transmat`, `compute_aabb` and
`renderCUDA` in cuda_rasterizer/forward.cu, `in_frustum` and `quat_to_rotmat` in
cuda_rasterizer/auxiliary.h (TIGHTBBOX 0, DUAL_VISIABLE 1, RENDER_AXUTILITY 1), and the
camera matrices of the 3DGS camera code (world_view_transform, getProjectionMatrix).

numpy in float32, nothing shared with ga_jax or kernels/: the camera goes through the
reference's world -> NDC -> pixel matrices, its pixels have integer centres (pixel (i, j) is
at (j, i); ga_jax's (j + 0.5, i + 0.5) must come out the same), and every surfel is
evaluated at every pixel (no tiles, so none of the reference's tile culling). The pair loop
is vectorised over pixels but keeps the reference's per-pixel control flow (`continue` ->
masked out, `done` -> frozen).

Also returned per pixel: how close the transmittance came to the two thresholds a float
rounding can flip (0.5 for the median depth, 1e-4 for the stop), and `ulp_seed` perturbs the
transforms by one ulp, so that tests can exclude (and count) pixels whose result hangs on
the last bit.
"""

from __future__ import annotations

import numpy as np

F = np.float32
NEAR_N, FAR_N = F(0.2), F(100.0)  # auxiliary.h near_n, far_n
FILTER_INV_SQUARE = F(2.0)  # auxiliary.h FilterInvSquare


def _quat_to_rotmat(quat):
    """auxiliary.h quat_to_rotmat: quat (r, x, y, z) -> R [3, 3] (math layout, columns =
    the glm columns)."""
    s = F(1.0) / np.sqrt(np.sum(quat * quat, dtype=F))
    w, x, y, z = (quat * s).astype(F)
    # glm::mat3(...) is filled column by column.
    cols = [
        [1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)],
        [2 * (x * y - w * z), 1 - 2 * (x * x + z * z), 2 * (y * z + w * x)],
        [2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.array(cols, F).T


def camera_matrices(cam2world, fx, fy, width, height, znear=0.01, zfar=100.0):
    """viewmatrix and projmatrix as the 3DGS camera hands them to the rasterizer: row-major
    [4, 4] arrays used as `point_row @ matrix` (the CUDA code reads them column-major).
    fx, fy in pixels; the principal point is the image centre (getProjectionMatrix)."""
    world2cam = np.linalg.inv(cam2world.astype(np.float64))
    viewmatrix = world2cam.T  # world_view_transform
    tan_x = width / (2.0 * fx)  # tan(FoVx / 2)
    tan_y = height / (2.0 * fy)
    top, right = tan_y * znear, tan_x * znear
    proj = np.zeros((4, 4))
    proj[0, 0] = 2.0 * znear / (2 * right)
    proj[1, 1] = 2.0 * znear / (2 * top)
    proj[3, 2] = 1.0
    proj[2, 2] = zfar / (zfar - znear)
    proj[2, 3] = -(zfar * znear) / (zfar - znear)
    projmatrix = viewmatrix @ proj.T  # full_proj_transform
    return viewmatrix.astype(F), projmatrix.astype(F)


def _preprocess(
    means, quats, scales, opacities, viewmatrix, projmatrix, width, height, filter_cutoff
):
    """preprocessCUDA: per surfel (kept, Tu, Tv, Tw, point_image, depth, normal)."""
    n = means.shape[0]
    out = dict(
        kept=np.zeros(n, bool),
        Tu=np.zeros((n, 3), F),
        Tv=np.zeros((n, 3), F),
        Tw=np.zeros((n, 3), F),
        xy=np.zeros((n, 2), F),
        depth=np.zeros(n, F),
        normal=np.zeros((n, 3), F),
    )
    # ndc2pix: glm::mat3x4 columns (W/2, 0, 0, (W-1)/2), (0, H/2, 0, (H-1)/2), (0, 0, 0, 1).
    ndc2pix = np.array(
        [
            [width / 2.0, 0, 0],
            [0, height / 2.0, 0],
            [0, 0, 0],
            [(width - 1) / 2.0, (height - 1) / 2.0, 1],
        ],
        F,
    )
    for i in range(n):
        p = means[i]
        # in_frustum: near culling on the view-space z.
        p_view = np.append(p, F(1.0)).astype(F) @ viewmatrix
        if p_view[2] <= F(0.2):
            continue
        # compute_transmat: T = transpose(splat2world) * world2ndc * ndc2pix.
        rot = _quat_to_rotmat(quats[i])
        scale_mat = np.diag([scales[i, 0], scales[i, 1], F(1.0)]).astype(F)  # scale_modifier 1
        big_l = rot @ scale_mat  # columns L[0], L[1], L[2]
        splat2world_t = np.array(
            [np.append(big_l[:, 0], 0.0), np.append(big_l[:, 1], 0.0), np.append(p, 1.0)], F
        )  # rows of transpose(splat2world)
        t_math = (splat2world_t @ projmatrix) @ ndc2pix  # [3, 3]; glm column c = t_math[:, c]
        tu, tv, tw = t_math[:, 0], t_math[:, 1], t_math[:, 2]
        normal = (big_l[:, 2] @ viewmatrix[:3, :3]).astype(F)  # transformVec4x3(L[2], view)
        # DUAL_VISIABLE: face the camera.
        cos = -np.sum(p_view[:3] * normal, dtype=F)
        if cos == 0:
            continue
        normal = normal if cos > 0 else -normal
        # compute_aabb with cutoff 3 (TIGHTBBOX 0): the box centre is the filter centre.
        cutoff = F(3.0) if filter_cutoff is None else F(filter_cutoff(opacities[i]))
        t = np.array([cutoff * cutoff, cutoff * cutoff, -1.0], F)
        d = np.sum(t * tw * tw, dtype=F)
        if d == 0:
            continue
        f = (F(1.0) / d) * t
        point_image = np.array([np.sum(f * tu * tw, dtype=F), np.sum(f * tv * tw, dtype=F)], F)
        out["kept"][i] = True
        out["Tu"][i], out["Tv"][i], out["Tw"][i] = tu, tv, tw
        out["xy"][i] = point_image
        out["depth"][i] = p_view[2]
        out["normal"][i] = normal
    return out


def render(
    means,
    quats,
    scales,
    opacities,
    colors,
    cam2world,
    fx,
    fy,
    width,
    height,
    bg,
    *,
    ulp_seed=None,
    centre_depth_under_filter=False,
    filter_cutoff=None,
):
    """Every output of renderCUDA for one view, each [H, W, ...] (colour [H, W, D]), and the
    per-pixel distances of the transmittance to the median (0.5) and stop (1e-4) thresholds.

    means [N, 3], quats [N, 4] (r, x, y, z), scales [N, 2], opacities [N], colors [N, D]
    (colors_precomp), cam2world [4, 4] OpenCV, fx, fy in pixels, bg [D].

    ulp_seed: move every element of every transform T by one float32 ulp, up or down at
      random: what the outputs then change by is how much they hang on rounding (a nearly
      edge-on surfel's hit depth can be metres away and ill-conditioned, for instance).
    Two switches give the other conventions, for control tests only:
    centre_depth_under_filter: the depth before e0ed020 (the centre depth Tw.z where the
      filter wins); filter_cutoff: opacity -> cutoff of the box whose centre the filter uses.
    """
    means, quats, scales = (np.asarray(a, F) for a in (means, quats, scales))
    opacities, colors, bg = (np.asarray(a, F) for a in (opacities, colors, bg))
    viewmatrix, projmatrix = camera_matrices(np.asarray(cam2world), fx, fy, width, height)
    pre = _preprocess(
        means, quats, scales, opacities, viewmatrix, projmatrix, width, height, filter_cutoff
    )
    if ulp_seed is not None:
        rng = np.random.default_rng(ulp_seed)
        for name in ("Tu", "Tv", "Tw"):
            away = np.where(rng.random(pre[name].shape) < 0.5, -np.inf, np.inf).astype(F)
            pre[name] = np.nextafter(pre[name], away)
    kept = np.flatnonzero(pre["kept"])
    # The reference sorts (tile | depth) keys with a stable radix sort: per pixel, depth order
    # with ties in surfel order.
    order = kept[np.argsort(pre["depth"][kept], kind="stable")]

    iy, ix = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    pix_x = ix.reshape(-1).astype(F)  # pixf = (pix.x, pix.y)
    pix_y = iy.reshape(-1).astype(F)
    num_pix = pix_x.shape[0]
    channels = colors.shape[1]
    big_t = np.ones(num_pix, F)
    done = np.zeros(num_pix, bool)
    big_c = np.zeros((num_pix, channels), F)
    big_n = np.zeros((num_pix, 3), F)
    big_d = np.zeros(num_pix, F)
    m1 = np.zeros(num_pix, F)
    m2 = np.zeros(num_pix, F)
    distortion = np.zeros(num_pix, F)
    median_depth = np.zeros(num_pix, F)
    to_median = np.full(num_pix, np.inf)  # min |T - 0.5| over composited pairs
    to_stop = np.full(num_pix, np.inf)  # min |test_T - 1e-4| over tested pairs

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for i in order:
            xy, tu, tv, tw = pre["xy"][i], pre["Tu"][i], pre["Tv"][i], pre["Tw"][i]
            live = ~done
            # Fisrt compute two homogeneous planes, See Eq. (8)
            k = pix_x[:, None] * tw - tu
            l = pix_y[:, None] * tw - tv
            p = np.cross(k, l).astype(F)
            live &= p[:, 2] != 0.0
            s_x = p[:, 0] / p[:, 2]
            s_y = p[:, 1] / p[:, 2]
            rho3d = s_x * s_x + s_y * s_y
            d_x = xy[0] - pix_x
            d_y = xy[1] - pix_y
            rho2d = FILTER_INV_SQUARE * (d_x * d_x + d_y * d_y)
            rho = np.minimum(rho3d, rho2d)
            # compute depth (e0ed020: the hit depth, whichever of rho3d / rho2d wins)
            depth = (s_x * tw[0] + s_y * tw[1]) + tw[2]
            if centre_depth_under_filter:
                depth = np.where(rho3d <= rho2d, depth, tw[2])
            live &= ~(depth < NEAR_N)
            power = F(-0.5) * rho
            live &= ~(power > 0.0)
            alpha = np.minimum(F(0.99), opacities[i] * np.exp(power)).astype(F)
            live &= ~(alpha < F(1.0) / F(255.0))
            test_t = big_t * (F(1.0) - alpha)
            to_stop = np.where(live, np.minimum(to_stop, np.abs(test_t - 1e-4)), to_stop)
            stop = live & (test_t < F(0.0001))
            done |= stop
            live &= ~stop
            w = np.where(live, alpha * big_t, F(0.0)).astype(F)
            a = F(1.0) - big_t
            m = FAR_N / (FAR_N - NEAR_N) * (F(1.0) - NEAR_N / np.where(live, depth, F(1.0)))
            distortion += np.where(live, (m * m * a + m2 - 2 * m * m1) * w, F(0.0))
            big_d += np.where(live, depth * w, F(0.0))
            m1 += np.where(live, m * w, F(0.0))
            m2 += np.where(live, m * m * w, F(0.0))
            to_median = np.where(live, np.minimum(to_median, np.abs(big_t - 0.5)), to_median)
            median_depth = np.where(live & (big_t > 0.5), depth, median_depth)
            big_n += w[:, None] * pre["normal"][i]
            big_c += w[:, None] * colors[i]
            big_t = np.where(live, test_t, big_t)

    def image(x):
        return x.reshape((height, width) + x.shape[1:])

    return dict(
        color=image(big_c + big_t[:, None] * bg),
        alpha=image(F(1.0) - big_t),
        depth=image(big_d),
        median_depth=image(median_depth),
        normal=image(big_n),
        distortion=image(distortion),
        to_median=image(to_median),
        to_stop=image(to_stop),
    )
