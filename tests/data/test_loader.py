"""Tests of ga_jax.data.loader: determinism, resume, sharding, bad input, global batches.

Data: tiny analytic-sphere chunks made in tmp (tests/data/fake_vae_data.py), 16 views at
32 px (16 px for the bad-input copies), resized to 16 px. One test reads ../shared/data and
skips without it. The worker tests start 2 grain processes (~2 s each loader).
"""

from __future__ import annotations

import json
import logging
import re

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from configs.common import data_config
from ga_jax.data.checks import nearest_distances
from ga_jax.data.gbuffer import GBufferError, read_chunk
from ga_jax.data.loader import make_vae_loader
from ga_jax.data.ply import read_ply_points
from ga_jax.data.transforms import resize_maps
from ga_jax.parallel.batch import to_global_batch
from ga_jax.parallel.mesh import make_mesh
from tests.data.fake_vae_data import make_fake_dataset


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    gbuffer, fps, _ = make_fake_dataset(tmp_path_factory.mktemp("vae_loader"), size=32)
    return gbuffer, fps


def tiny_config(roots, **overrides):
    c = data_config()
    c.gbuffer_root, c.fps_root = str(roots[0]), str(roots[1])
    c.encoder_size = 16
    c.render_size = 16
    c.fps_points = 32
    c.batch_size = 2
    c.read_threads = 1
    for key, value in overrides.items():
        setattr(c, key, value)
    return c


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert sorted(x) == sorted(y)
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


# --------------------------------------------------------------------------------------------
# Determinism and epochs


def test_same_seed_same_batches_other_seed_differs(roots):
    first = take(make_vae_loader(tiny_config(roots, seed=3)), 3)
    again = take(make_vae_loader(tiny_config(roots, seed=3)), 3)
    assert_same_batches(first, again)
    other = take(make_vae_loader(tiny_config(roots, seed=4)), 3)
    assert not np.array_equal(first[0]["background"], other[0]["background"])
    assert not all(
        np.array_equal(a["record_index"], b["record_index"]) for a, b in zip(first, other)
    )
    batch = first[0]
    assert batch["encoder_input"].shape == (2, 8, 16, 16, 15)
    assert batch["target_rgb"].shape == (2, 8, 16, 16, 3)
    np.testing.assert_array_equal(batch["num_skipped"], [0, 0])


def test_each_epoch_is_a_new_permutation(roots):
    it = make_vae_loader(tiny_config(roots, num_epochs=2, batch_size=3))
    records = np.concatenate([b["record_index"] for b in it])
    assert len(records) == 24
    epoch1, epoch2 = records[:12], records[12:]
    assert sorted(epoch1) == sorted(epoch2) == list(range(12))
    assert not np.array_equal(epoch1, epoch2)
    # The same record gets fresh augmentation in another epoch.
    unshuffled = make_vae_loader(tiny_config(roots, num_epochs=2, batch_size=12, shuffle=False))
    a, b = take(unshuffled, 2)
    np.testing.assert_array_equal(a["record_index"], b["record_index"])
    assert not np.array_equal(a["background"], b["background"])


# --------------------------------------------------------------------------------------------
# Resume


def test_resume_without_workers(roots, tmp_path):
    config = tiny_config(roots)
    reference = take(make_vae_loader(config), 5)
    it = make_vae_loader(config)
    take(it, 2)
    state = json.loads(json.dumps(it.get_state()))  # the state is JSON (grain's checkpoint)
    restored = make_vae_loader(config)
    restored.set_state(state)
    assert_same_batches(take(restored, 3), reference[2:])
    # Through orbax, as the trainer's checkpointer saves it.
    checkpointer = ocp.Checkpointer(grain.checkpoint.CheckpointHandler())
    checkpointer.save(tmp_path / "data", args=grain.checkpoint.CheckpointSave(it))
    via_orbax = make_vae_loader(config)
    checkpointer.restore(tmp_path / "data", args=grain.checkpoint.CheckpointRestore(via_orbax))
    assert_same_batches(take(via_orbax, 3), reference[2:])


def test_resume_with_two_workers(roots):
    reference = take(make_vae_loader(tiny_config(roots)), 5)
    config = tiny_config(roots, worker_count=2)
    it = make_vae_loader(config)
    try:
        # The worker count does not change the batches.
        assert_same_batches(take(it, 2), reference[:2])
        state = it.get_state()
    finally:
        it.close()
    restored = make_vae_loader(config)
    try:
        restored.set_state(state)
        assert_same_batches(take(restored, 3), reference[2:])
    finally:
        restored.close()


# --------------------------------------------------------------------------------------------
# Sharding


@pytest.mark.parametrize("shard_count, max_chunks", [(2, None), (3, 5)])
def test_shards_are_disjoint_and_cover_the_data(roots, shard_count, max_chunks):
    seen = []
    for shard in range(shard_count):
        config = tiny_config(roots, num_epochs=1, batch_size=shard_count, max_chunks=max_chunks)
        it = make_vae_loader(config, shard_index=shard, shard_count=shard_count)
        seen.append(np.concatenate([b["record_index"] for b in it]).tolist())
    num_records = 12 if max_chunks is None else 2 * max_chunks
    usable = num_records - num_records % shard_count
    assert all(len(s) == usable // shard_count for s in seen)  # equal per shard
    flat = [r for s in seen for r in s]
    assert len(set(flat)) == len(flat) == usable  # disjoint
    assert set(flat) <= set(range(num_records))
    if usable == num_records:
        assert set(flat) == set(range(num_records))


def test_processes_load_blocks_of_the_same_global_batches(roots):
    """The processes' batches, concatenated in process order, are the batches one process
    loads (the same records in the same order: what the multi-process runs rely on)."""
    config = tiny_config(roots, num_epochs=1, batch_size=4)
    single = [b["record_index"].tolist() for b in make_vae_loader(config)]
    blocks = [
        [b["record_index"].tolist() for b in make_vae_loader(config, shard_index=p, shard_count=2)]
        for p in (0, 1)
    ]
    assert len(single) == 3 and all(len(b) == 3 for b in blocks)
    assert [a + b for a, b in zip(*blocks, strict=True)] == single
    # A global batch larger than the data (12 records) repeats records, whatever the count.
    config = tiny_config(roots, batch_size=16)
    single = next(make_vae_loader(config))["record_index"].tolist()
    halves = [
        next(make_vae_loader(config, shard_index=p, shard_count=2))["record_index"].tolist()
        for p in (0, 1)
    ]
    assert len(single) == 16 and halves[0] + halves[1] == single


def test_shard_options_default_to_the_process(roots):
    it = make_vae_loader(tiny_config(roots, num_epochs=1))
    assert len(np.concatenate([b["record_index"] for b in it])) == 12  # 1 process: all


# --------------------------------------------------------------------------------------------
# Bad input


def write_ply_without_z(path, points):
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float nz\nend_header\n"
    )
    path.write_bytes(header.encode() + points.astype("<f4").tobytes())


def corrupt(chunk, fps_ply, case):
    """Break the chunk (or its cloud) one way; returns (file named, fragment of the message)."""
    if case == "truncated image":
        file = chunk / "raw_img.jpg"
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
        return file, "truncated or corrupt"
    if case == "missing file":
        file = chunk / "depth.npz"
        file.unlink()
        return file, "missing file"
    if case == "nan camera":
        file = chunk / "c.npy"
        rows = np.load(file)
        rows[5, 3] = np.nan
        np.save(file, rows)
        return file, "expected finite camera rows, found NaN/inf in view(s) [5]"
    if case == "wrong tile width":
        file = chunk / "raw_img.jpg"
        image = np.asarray(Image.open(file))
        Image.fromarray(image[:, :-5]).save(file)
        return file, "width a multiple of the height"
    if case == "ply without z":
        write_ply_without_z(fps_ply, read_ply_points(fps_ply))
        return fps_ply, "expected vertex properties x, y and z"
    raise AssertionError(case)


CASES = ["truncated image", "missing file", "nan camera", "wrong tile width", "ply without z"]


@pytest.fixture
def broken_roots(tmp_path):
    """3 objects x 1 chunk (records 0..5); object 1 = records 2 and 3 gets broken."""
    gbuffer, fps, _ = make_fake_dataset(tmp_path, {"Spheres": 3}, chunks_per_object=1, size=16)
    return gbuffer, fps, gbuffer / "Spheres/0/1/1", fps / "Spheres/0/1/fps-4096.ply"


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fail_names_the_file(broken_roots, case):
    gbuffer, fps, chunk, ply = broken_roots
    file, fragment = corrupt(chunk, ply, case)
    it = make_vae_loader(tiny_config((gbuffer, fps), on_error="fail", num_epochs=1))
    with pytest.raises(GBufferError) as error:
        list(it)
    message = str(error.value)
    assert message.startswith(str(file)), message
    assert fragment in message, message


@pytest.mark.parametrize("case", CASES)
def test_bad_input_skip_drops_logs_and_counts(broken_roots, case, caplog):
    gbuffer, fps, chunk, ply = broken_roots
    file, fragment = corrupt(chunk, ply, case)
    config = tiny_config((gbuffer, fps), on_error="skip", num_epochs=1, batch_size=1, shuffle=False)
    it = make_vae_loader(config)
    with caplog.at_level(logging.WARNING, logger="ga_jax.data.loader"):
        batches = list(it)
    records = [int(b["record_index"][0]) for b in batches]
    assert records == [0, 1, 4, 5]  # the bad chunk's two records are gone
    assert [int(b["num_skipped"][0]) for b in batches] == [0, 0, 2, 0]
    assert it.num_skipped == 2 and it.get_state()["num_skipped"] == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for index, text in zip((2, 3), warnings):
        assert f"skipping bad record {index} (chunk {chunk})" in text
        assert str(file) in text and fragment in text


def test_bad_input_through_workers(broken_roots):
    gbuffer, fps, chunk, ply = broken_roots
    file, fragment = corrupt(chunk, ply, "nan camera")
    config = tiny_config(
        (gbuffer, fps), on_error="skip", num_epochs=1, batch_size=1, shuffle=False, worker_count=2
    )
    it = make_vae_loader(config)
    try:
        records = sorted(int(b["record_index"][0]) for b in it)
        assert records == [0, 1, 4, 5] and it.num_skipped == 2
    finally:
        it.close()
    config.on_error = "fail"
    it = make_vae_loader(config)
    try:
        with pytest.raises(GBufferError, match=re.escape(f"{file}: {fragment}")):
            list(it)
    finally:
        it.close()


def test_bad_skip_state_restores_the_count(broken_roots):
    gbuffer, fps, chunk, ply = broken_roots
    corrupt(chunk, ply, "missing file")
    config = tiny_config((gbuffer, fps), on_error="skip", batch_size=1, shuffle=False)
    it = make_vae_loader(config)
    take(it, 3)  # records 0, 1, then 2 and 3 are skipped before 4
    restored = make_vae_loader(config)
    restored.set_state(it.get_state())
    assert restored.num_skipped == 2
    assert int(next(restored)["record_index"][0]) == 5


# --------------------------------------------------------------------------------------------
# Config errors


@pytest.mark.parametrize(
    "overrides, kwargs, message",
    [
        ({"views_per_half": 9}, {}, "views_per_half: 9 views per half need 18 views per chunk"),
        ({"on_error": "ignore"}, {}, "on_error"),
        ({"num_supervise_per_half": 9}, {}, "num_supervise_per_half"),
        ({"batch_size": 3}, {"shard_index": 0, "shard_count": 2}, "batch_size"),
        ({"worker_count": -1}, {}, "worker_count"),
        ({"num_epochs": 0}, {}, "num_epochs"),
        ({"classes": ("Cubes",)}, {}, "classes"),
        ({}, {"shard_index": 2, "shard_count": 2}, "shard_index"),
    ],
)
def test_bad_config_names_the_field(roots, overrides, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_vae_loader(tiny_config(roots, **overrides), **kwargs)


# --------------------------------------------------------------------------------------------
# Global batches


def test_to_global_batch_on_8_devices(roots):
    assert jax.device_count() == 8
    host = next(make_vae_loader(tiny_config(roots, batch_size=8)))
    mesh = make_mesh({"data": -1})
    batch = to_global_batch(host, mesh)
    assert sorted(batch) == sorted(host)
    for key, array in batch.items():
        assert isinstance(array, jax.Array) and array.shape == host[key].shape, key
        assert array.sharding.spec[0] in ("data", ("data",))
        assert len(array.addressable_shards) == 8
        for shard in array.addressable_shards:
            assert shard.data.shape[0] == 1
            np.testing.assert_array_equal(np.asarray(shard.data), host[key][shard.index])
        np.testing.assert_array_equal(np.asarray(array), host[key])
    # A 4 x 2 mesh: split over both axes, or over 'data' and replicated over 'fsdp'.
    mesh2 = make_mesh({"data": 4, "fsdp": 2})
    both = to_global_batch(host, mesh2, axis=("data", "fsdp"))["fps_xyz"]
    assert {s.data.shape[0] for s in both.addressable_shards} == {1}
    data_only = to_global_batch(host, mesh2, axis="data")["fps_xyz"]
    assert {s.data.shape[0] for s in data_only.addressable_shards} == {2}
    np.testing.assert_array_equal(np.asarray(data_only), host["fps_xyz"])
    with pytest.raises(ValueError, match=r"fps_xyz: expected a leading batch dim divisible"):
        to_global_batch({"fps_xyz": host["fps_xyz"][:6]}, mesh)
    with pytest.raises(ValueError, match="axis"):
        to_global_batch(host, mesh, axis="model")


# --------------------------------------------------------------------------------------------
# Real data


def test_real_data_batch(shared_data):
    config = data_config()
    config.gbuffer_root = str(shared_data / "objaverse_gbuffer")
    config.fps_root = str(shared_data / "objaverse_fps")
    config.encoder_size = 64
    config.render_size = 64
    config.batch_size = 1
    config.max_chunks = 1
    config.shuffle = False
    config.jitter_prob = 0.0
    config.read_threads = 0  # read just the one sample
    batch = next(make_vae_loader(config))
    assert batch["encoder_input"].shape == (1, 8, 64, 64, 15)
    assert batch["target_rgb"].shape == (1, 8, 64, 64, 3)
    assert batch["fps_xyz"].shape == (1, 768, 3)
    np.testing.assert_array_equal(batch["record_index"], [0])
    cloud = read_ply_points(shared_data / "objaverse_fps/Animals/0/10017/fps-4096.ply")
    # FPS picks points of the cloud.
    assert nearest_distances(batch["fps_xyz"][0], cloud).max() == 0
    # The xyz map of fully covered pixels lies on the surface the cloud samples (a separate
    # file): median distance 0.024, about the cloud's own spacing (0.022 between disjoint
    # halves of it); the legacy map is off by more (measured 0.037).
    alpha = read_chunk(
        shared_data / "objaverse_gbuffer" / config_chunk(shared_data), views=range(8)
    ).alpha
    solid = resize_maps(alpha, 64) > 0.99
    correct = np.median(nearest_distances(batch["encoder_input"][0, ..., 12:15][solid], cloud))
    config.legacy_ray_depth = True
    legacy_map = next(make_vae_loader(config))["encoder_input"][0, ..., 12:15]
    legacy = np.median(nearest_distances(legacy_map[solid], cloud))
    assert correct < 0.03, correct
    assert legacy > 1.2 * correct, (legacy, correct)


def config_chunk(shared_data) -> str:
    listing = json.loads((shared_data / "objaverse_gbuffer" / "dataset.json").read_text())
    return next(iter(listing.values()))[0]
