"""Pinhole cameras in the data's convention.

A camera row of c.npy has 25 floats: [0:16] the row-major 4x4 cam2world matrix of an OpenCV
camera (x right, y down, +z forward; world z-up) and [16:25] the 3x3 intrinsics normalised by
the image size (fx, fy in units of image width/height, principal point cx = cy = 0.5 at the
image centre). K[2, 2] is stored as ~1/512 in the data and is ignored.

Pixel convention everywhere in ga_jax: pixel (row i, col j) has its centre at
(x, y) = (j + 0.5, i + 0.5), so a camera-space point (X, Y, Z) lands at
x = fx_px X / Z + cx_px with fx_px = fx * W and cx_px = cx * W (likewise y with H).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Cameras:
    """A batch of cameras sharing one image size. Leading dims [...] are free."""

    cam2world: jax.Array  # [..., 4, 4] OpenCV camera -> world
    intrinsics: jax.Array  # [..., 3, 3] in pixels for (height, width)
    height: int = struct.field(pytree_node=False)
    width: int = struct.field(pytree_node=False)

    @classmethod
    def from_rows(cls, rows: jax.Array, height: int, width: int) -> Cameras:
        """Cameras from c.npy rows [..., 25] rendered at `height` x `width` pixels."""
        rows = jnp.asarray(rows, jnp.float32)
        if rows.shape[-1] != 25:
            raise ValueError(f"camera rows: expected shape [..., 25], got {rows.shape}")
        cam2world = rows[..., :16].reshape(*rows.shape[:-1], 4, 4)
        k_norm = rows[..., 16:25].reshape(*rows.shape[:-1], 3, 3)
        scale = jnp.array([width, height, 1.0], jnp.float32)
        # Rows 0 and 1 scale with the image size; row 2 is (0, 0, 1) whatever the file says.
        intrinsics = k_norm * scale[:, None]
        intrinsics = intrinsics.at[..., 2, :].set(jnp.array([0.0, 0.0, 1.0]))
        return cls(cam2world=cam2world, intrinsics=intrinsics, height=height, width=width)

    @property
    def world2cam(self) -> jax.Array:
        """[..., 4, 4] rigid inverse of cam2world."""
        rot = self.cam2world[..., :3, :3]
        trans = self.cam2world[..., :3, 3]
        rot_t = jnp.swapaxes(rot, -1, -2)
        t_inv = -jnp.einsum("...ij,...j->...i", rot_t, trans)
        top = jnp.concatenate([rot_t, t_inv[..., None]], axis=-1)
        bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0]), top.shape[:-2] + (1, 4))
        return jnp.concatenate([top, bottom], axis=-2)

    @property
    def centers(self) -> jax.Array:
        """[..., 3] camera centres in world space."""
        return self.cam2world[..., :3, 3]

    def resized(self, height: int, width: int) -> Cameras:
        """The same cameras rendering at another image size."""
        scale = jnp.array([width / self.width, height / self.height, 1.0], jnp.float32)
        return Cameras(self.cam2world, self.intrinsics * scale[:, None], height, width)

    def project(self, points: jax.Array) -> tuple[jax.Array, jax.Array]:
        """World points [..., P, 3] -> pixel coords [..., P, 2] and camera z [..., P]."""
        w2c = self.world2cam
        cam = jnp.einsum("...ij,...pj->...pi", w2c[..., :3, :3], points) + w2c[..., None, :3, 3]
        pix = jnp.einsum("...ij,...pj->...pi", self.intrinsics, cam)
        return pix[..., :2] / pix[..., 2:3], cam[..., 2]


# The data's intrinsics: fx = fy = 1.3889 (normalised), FoV 39.6 degrees, centred.
DATA_FOCAL = 1.3889


def look_at(eyes: jax.Array, target: jax.Array | None = None, up=(0.0, 0.0, 1.0)) -> jax.Array:
    """OpenCV cam2world [..., 4, 4] for cameras at eyes [..., 3] looking at target (origin).

    World is z-up as in the data; image y points down, so camera +y is the negative of the
    world up direction projected onto the image plane.
    """
    eyes = jnp.asarray(eyes, jnp.float32)
    target = jnp.zeros(3, jnp.float32) if target is None else jnp.asarray(target, jnp.float32)
    forward = target - eyes
    forward = forward / jnp.linalg.norm(forward, axis=-1, keepdims=True)
    up = jnp.broadcast_to(jnp.asarray(up, jnp.float32), forward.shape)
    right = jnp.cross(forward, up)
    # Looking straight up or down: any right vector orthogonal to forward will do.
    degenerate = jnp.linalg.norm(right, axis=-1, keepdims=True) < 1e-6
    right = jnp.where(degenerate, jnp.cross(forward, jnp.array([0.0, 1.0, 0.0])), right)
    right = right / jnp.linalg.norm(right, axis=-1, keepdims=True)
    down = jnp.cross(forward, right)
    rot = jnp.stack([right, down, forward], axis=-1)
    top = jnp.concatenate([rot, eyes[..., None]], axis=-1)
    bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0]), top.shape[:-2] + (1, 4))
    return jnp.concatenate([top, bottom], axis=-2)


def orbit_cameras(
    num_views: int,
    height: int,
    width: int,
    radius: float = 1.7,
    elevation_deg: float = 20.0,
    focal: float = DATA_FOCAL,
) -> Cameras:
    """num_views cameras evenly spaced in azimuth around the origin, data intrinsics."""
    azimuth = jnp.linspace(0.0, 2 * jnp.pi, num_views, endpoint=False)
    elev = jnp.deg2rad(elevation_deg)
    eyes = radius * jnp.stack(
        [jnp.cos(azimuth) * jnp.cos(elev), jnp.sin(azimuth) * jnp.cos(elev),
         jnp.full_like(azimuth, jnp.sin(elev))],
        axis=-1,
    )
    k = jnp.array([[focal * width, 0, 0.5 * width], [0, focal * height, 0.5 * height], [0, 0, 1]],
                  jnp.float32)
    return Cameras(look_at(eyes), jnp.broadcast_to(k, (num_views, 3, 3)), height, width)
