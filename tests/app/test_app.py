"""The web app's logic without a browser (launch/app.py): generation and its files, edits,
the missing image stages, and the components the browser test finds."""

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the app needs gradio: pip install -e '.[app]'")

from launch import app  # noqa: E402

# write_files' settings here: small renders on the portable renderer.
RENDER = {"size": 64, "frames": 4, "mesh_resolution": 32, "backend": "xla"}


@pytest.fixture(scope="module")
def models(tiny_models):
    return app.Models(tiny_models)


@pytest.fixture(scope="module")
def result(models):
    return app.generate(models, "text", "a red cube", seed=3, steps=2)


def test_generation_writes_the_view_turntable_and_downloads(result, tmp_path):
    assert result.sample.info["seed"] == 3 and result.sample.info["prompt"] == "a red cube"
    assert result.sample.info["sampler"]["steps"] == 2
    files = app.write_files(result, tmp_path, **RENDER)
    assert files.view.suffix == ".glb" and files.turntable.suffix == ".gif"
    names = sorted(p.name for p in files.downloads)
    assert names == ["object.glb", "object_3dgs.ply", "object_surfels.ply"]
    for path in [files.view, files.turntable, *files.downloads]:
        assert path.is_file() and path.stat().st_size > 0, path
    assert files.view.read_bytes()[:4] == b"glTF"
    assert files.turntable.read_bytes()[:6] == b"GIF89a"
    assert '"condition": "text"' in app.summary(result)


def test_translate_moves_only_the_region_and_regenerates(models, result):
    before = result.sample.cloud.xyz
    edited = app.edit_result(
        models, result, "box", "0,0,0.2", "0.45,0.45,0.25", "translate", "0,0,0.1"
    )
    inside = (np.abs(before - [0, 0, 0.2]) <= [0.45, 0.45, 0.25]).all(axis=1)
    assert 0 < inside.sum() < len(before)
    np.testing.assert_allclose(edited.sample.cloud.xyz[inside], before[inside] + [0, 0, 0.1])
    np.testing.assert_array_equal(edited.sample.cloud.xyz[~inside], before[~inside])
    np.testing.assert_array_equal(
        edited.sample.cloud.noise_features, result.sample.cloud.noise_features
    )
    assert not np.allclose(edited.sample.surfels.means, result.sample.surfels.means)
    record = edited.sample.info["edits"][-1]
    assert record == {
        "op": "translate",
        "box": "0,0,0.2;0.45,0.45,0.25",
        "points_inside": int(inside.sum()),
        "vector": "0,0,0.1",
    }
    assert edited.steps == result.steps and edited.sample.info["sampler"]["steps"] == 2


def test_delete_resamples_to_the_point_count(models, result):
    edited = app.edit_result(models, result, "sphere", "0,0,0", "0.2", "delete")
    xyz = edited.sample.cloud.xyz
    assert xyz.shape == result.sample.cloud.xyz.shape
    kept = np.linalg.norm(result.sample.cloud.xyz, axis=1) > 0.2
    # The points outside the sphere survive with their rows; new ones fill the gap.
    assert np.isin(result.sample.cloud.ids[kept], edited.sample.cloud.ids).all()
    assert edited.sample.cloud.ids.max() >= len(xyz)


def test_bad_edits_name_the_field(models, result):
    with pytest.raises(ValueError, match="no point lies inside"):
        app.edit_result(models, result, "sphere", "5,5,5", "0.1", "delete")
    with pytest.raises(ValueError, match="vector"):
        app.edit_result(models, result, "box", "0,0,0", "1,1,1", "translate", "1,2")
    with pytest.raises(ValueError, match="box"):
        app.edit_result(models, result, "box", "0,0", "1,1,1", "translate")


def test_missing_image_stages_give_a_message_not_a_crash(models, tmp_path):
    assert models.missing("text") is None
    reason = models.missing("image")
    assert reason and "stage1_image" in reason
    with pytest.raises(ValueError, match="stage1_image"):
        app.generate(models, "image", image=np.zeros((8, 8, 3), np.uint8))
    ui = app.build_ui(models, tmp_path, **RENDER)
    ids = {getattr(b, "elem_id", None) for b in ui.blocks.values()}
    expected = {"prompt", "generate_text", "image", "generate_image", "image_unavailable"}
    expected |= {"seed", "steps", "guidance", "region", "center", "size", "op", "vector"}
    expected |= {"apply_edit", "view", "turntable", "downloads", "info", "image_note"}
    assert expected <= ids
    [button] = [b for b in ui.blocks.values() if getattr(b, "elem_id", None) == "generate_image"]
    assert button.interactive is False


def test_guidance_field():
    assert app.parse_guidance("") is None and app.parse_guidance(" ") is None
    assert app.parse_guidance("3.5") == 3.5
    with pytest.raises(ValueError, match="guidance"):
        app.parse_guidance("strong")
