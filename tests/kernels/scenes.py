"""Small random views shared by the kernel tests."""

import jax
import jax.numpy as jnp
import numpy as np

from ga_jax.rendering import Cameras, Surfels, orbit_cameras, project_surfels
from ga_jax.rendering.scenes import random_surfels
from kernels.config import TileConfig

FOCAL = 1.3889  # the data's normalised focal length


def random_view(
    seed,
    num,
    height,
    width,
    channels=3,
    config=TileConfig(),
    view=1,
):
    """Splats of one view of a random surfel cloud (sizes as the VAE makes them)."""
    surfels = random_surfels(jax.random.key(seed), num, channels)
    cams = orbit_cameras(2, height, width)
    splats = project_surfels(surfels, cams, config)
    return jax.tree.map(lambda x: x[view], splats)


def opaque_view(seed, height, width, config=TileConfig()):
    """Many large overlapping opaque surfels: exercises the early stop (T < 1e-4)."""
    surfels = random_surfels(jax.random.key(seed), 150, 3, radius=0.2)
    surfels = surfels.replace(scales=surfels.scales * 12.0, opacities=jnp.full((150,), 0.995))
    splats = project_surfels(surfels, orbit_cameras(2, height, width), config)
    return jax.tree.map(lambda x: x[0], splats)


def _unit(v):
    return v / np.linalg.norm(v)


def _look_at(eye):
    forward = _unit(-eye)
    right = _unit(np.cross(forward, [0.0, 0.0, 1.0]))
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=-1)
    c2w[:3, 3] = eye
    return c2w


def _quat_from_frame(t_u, t_w):
    """(w, x, y, z) of the rotation with columns (t_u, t_w x t_u, t_w), both unit and
    orthogonal."""
    rot = np.stack([t_u, np.cross(t_w, t_u), t_w], axis=-1)
    # Shepperd's method: divide by the largest of the four squared components.
    trace = np.trace(rot)
    i = int(np.argmax([trace, *np.diag(rot)]))
    if i == 0:
        w = np.sqrt(1.0 + trace) / 2.0
        return np.array(
            [w, rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]]
        ) / np.array([1.0, 4 * w, 4 * w, 4 * w])
    a = i - 1
    b, c = (a + 1) % 3, (a + 2) % 3
    xyz = np.zeros(3)
    xyz[a] = np.sqrt(max(1.0 + rot[a, a] - rot[b, b] - rot[c, c], 0.0)) / 2.0
    xyz[b] = (rot[b, a] + rot[a, b]) / (4 * xyz[a])
    xyz[c] = (rot[c, a] + rot[a, c]) / (4 * xyz[a])
    return np.array([(rot[c, b] - rot[b, c]) / (4 * xyz[a]), *xyz])


def convention_scene(seed, channels, height, width):
    """(Surfels [N], Cameras [1]): one camera looking at the origin and the cases where the
    2DGS reference's conventions at e0ed020 matter, beside the VAE's surfels:

    - edge-on surfels (the plane contains the camera centre, so every pixel ray meets it at
      depth 0, behind the near plane) and nearly edge-on ones (0.5-2 degrees off);
    - surfels straddling the near plane: centres at camera z in (0.21, 0.32), tilted so that
      the disk's 3-sigma part crosses z = 0.2 but stays in front of the camera plane;
    - large thin tilted surfels near the camera, where perspective moves the centre of a
      box of the projected ellipse with the cutoff (the filter's centre).
    """
    rng = np.random.default_rng(seed)
    eye = np.array([1.6, -0.5, 0.6]) * (1.0 + 0.1 * rng.standard_normal())
    c2w = _look_at(eye)
    right, down, forward = c2w[:3, 0], c2w[:3, 1], c2w[:3, 2]
    means, quats, scales = [], [], []

    def add(mean, quat, scale):
        means.append(mean)
        quats.append(quat)
        scales.append(scale)

    # The VAE's surfels: ~4.5 mm (sub-pixel here: the filter decides their footprint) and
    # some of a few cm, on a sphere of 0.35 m.
    for _ in range(160):
        size = 0.0045 if rng.random() < 0.6 else 0.03
        add(
            _unit(rng.standard_normal(3)) * 0.35,
            rng.standard_normal(4),
            size * np.exp(0.4 * rng.standard_normal(2)),
        )
    for i in range(40):
        p = rng.uniform(-0.3, 0.3, 3)
        ray = _unit(p - eye)
        normal = _unit(np.cross(ray, rng.standard_normal(3)))
        if i % 2:
            normal = _unit(normal + np.tan(np.deg2rad(rng.uniform(0.5, 2.0))) * ray)
        size = rng.uniform(0.005, 0.04, 2) * np.array([1.0, rng.uniform(0.1, 1.0)])
        add(p, _quat_from_frame(_unit(np.cross(normal, rng.standard_normal(3))), normal), size)
    near = 0
    while near < 12:
        z = rng.uniform(0.21, 0.32)
        p = eye + z * forward + 0.25 * z * (rng.uniform(-1, 1) * right + rng.uniform(-1, 1) * down)
        size = rng.uniform(0.02, 0.06, 2)
        t_w = _unit(rng.standard_normal(3))
        t_u = _unit(np.cross(t_w, rng.standard_normal(3)))
        # How far the disk reaches in camera z per unit of radius (in sigmas).
        reach = np.hypot(size[0] * (t_u @ forward), size[1] * (np.cross(t_w, t_u) @ forward))
        if z - 3.0 * reach < 0.2 and z - 3.6 * reach > 0.02:
            add(p, _quat_from_frame(t_u, t_w), size)
            near += 1
    for _ in range(8):
        z = rng.uniform(0.5, 0.9)
        p = eye + z * forward + 0.3 * z * (rng.uniform(-1, 1) * right + rng.uniform(-1, 1) * down)
        t_w = _unit(-forward + 0.9 * rng.standard_normal(3))
        t_u = _unit(np.cross(t_w, rng.standard_normal(3)))
        add(
            p,
            _quat_from_frame(t_u, t_w),
            np.array([rng.uniform(0.04, 0.08), rng.uniform(0.0005, 0.004)]),
        )

    n = len(means)
    f32 = lambda x: jnp.asarray(np.asarray(x), jnp.float32)
    surfels = Surfels(
        means=f32(means),
        quaternions=f32(quats),
        scales=f32(scales),
        opacities=f32(rng.uniform(0.05, 1.0, n)),
        colors=f32(rng.uniform(0.0, 1.0, (n, channels))),
    )
    intr = [[FOCAL * width, 0, width / 2], [0, FOCAL * height, height / 2], [0, 0, 1]]
    cams = Cameras(f32(c2w)[None], f32(intr)[None], height, width)
    return surfels, cams


def convention_view(seed, height, width, channels=3, config=TileConfig()):
    """Splats of convention_scene's view."""
    surfels, cams = convention_scene(seed, channels, height, width)
    return jax.tree.map(lambda x: x[0], project_surfels(surfels, cams, config))
