"""Free per-object surfels (launch.surfel_ceiling) on a fake two-sphere dataset."""

from __future__ import annotations

import pytest

from configs.vae import tiny
from ga_jax.evaluation.surfel_ceiling import fit_free_surfels
from tests.data.fake_vae_data import make_fake_dataset


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    gbuffer, fps, _ = make_fake_dataset(
        tmp_path_factory.mktemp("ceiling"), classes={"Spheres": 2}, chunks_per_object=1,
        views=4, size=32, points=256,
    )
    c = tiny.get_config().unlock()
    for data in (c.data, c.eval_data):
        data.gbuffer_root, data.fps_root = str(gbuffer), str(fps)
        data.batch_size = 2
    return c


def test_fitting_raises_the_held_out_psnr(config):
    start = fit_free_surfels(config, num_surfels=128, steps=1, lr=0.02)
    fitted = fit_free_surfels(config, num_surfels=128, steps=40, lr=0.02)
    assert start["records"] == fitted["records"] == 4  # 2 objects x 2 halves, each once
    assert fitted["psnr"] > start["psnr"] + 3.0, (start, fitted)
    assert fitted["train_psnr"] > start["train_psnr"]


def test_objects_only_in_the_eval_data_are_an_error(config, tmp_path):
    c = config.copy_and_resolve_references()
    c.data.max_chunks = 1  # training sees one sphere, evaluation both
    with pytest.raises(ValueError, match="never appear in config.data"):
        fit_free_surfels(c, num_surfels=128, steps=1)
