"""point_surfels: a cloud drawn as three orthogonal discs per point is visible from every
axis (one disc alone vanishes edge-on), coloured by height."""

import dataclasses

import jax.numpy as jnp
import numpy as np

from ga_jax.rendering.cameras import DATA_FOCAL, Cameras, look_at
from ga_jax.rendering.render import render_surfels
from ga_jax.rendering.scenes import point_surfels

SIZE = 32


def axis_cameras() -> Cameras:
    eyes = jnp.array([[1.5, 0.0, 0.0], [0.0, 1.5, 0.0], [0.0, 0.0, 1.5]])
    k = jnp.array([[DATA_FOCAL * SIZE, 0, SIZE / 2], [0, DATA_FOCAL * SIZE, SIZE / 2], [0, 0, 1]])
    return Cameras(look_at(eyes, up=(0.0, 1.0, 1.0)), jnp.broadcast_to(k, (3, 3, 3)), SIZE, SIZE)


def test_a_point_is_seen_from_every_axis_and_one_disc_is_not():
    surfels = point_surfels(jnp.zeros((1, 3)), radius=0.02)
    assert surfels.means.shape == (3, 3)
    centre = render_surfels(surfels, axis_cameras()).alpha[:, SIZE // 2, SIZE // 2]
    assert np.all(np.asarray(centre) > 0.5)
    # The z-normal disc alone, seen edge-on from x and y: (almost) nothing there.
    one = dataclasses.replace(
        surfels, **{f.name: getattr(surfels, f.name)[:1] for f in dataclasses.fields(surfels)}
    )
    edge_on = np.asarray(render_surfels(one, axis_cameras()).alpha[:2, SIZE // 2, SIZE // 2])
    assert np.all(edge_on < 0.05)


def test_colour_runs_from_low_to_high_with_height():
    xyz = jnp.array([[0.0, 0.0, -0.45], [0.0, 0.0, 0.0], [0.0, 0.0, 0.45], [0.0, 0.0, 0.9]])
    colours = np.asarray(point_surfels(xyz).colors).reshape(4, 3, 3)
    assert np.all(colours == colours[:, :1])  # the three discs of a point share its colour
    low, mid, high, above = colours[:, 0]
    np.testing.assert_allclose(mid, 0.5 * (low + high), atol=1e-6)
    np.testing.assert_allclose(above, high)  # clipped at the box
    assert np.argmax(low) == 2 and np.argmax(high) == 0  # blue at the bottom, orange on top
