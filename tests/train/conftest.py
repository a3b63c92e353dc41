"""Fixtures of the training tests."""

from __future__ import annotations

import pytest

from tests.data.fake_vae_data import make_fake_dataset


@pytest.fixture(scope="module")
def fake_roots(tmp_path_factory):
    """(G-buffer root, FPS root, truth) of 4 fake sphere objects at 32 px."""
    root = tmp_path_factory.mktemp("fake_vae")
    return make_fake_dataset(
        root, classes={"Spheres": 4}, chunks_per_object=1, views=4, size=32, points=256
    )
