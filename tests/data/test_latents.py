"""The latent dataset format: round trip, atomic index, and errors naming file and field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ga_jax.data.latents import LatentDataset, LatentFormatError, LatentWriter

P, C, K = 16, 10, 2


def arrays(seed: int, with_cond: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    out = dict(
        xyz=rng.uniform(-0.45, 0.45, (K, P, 3)),
        sample=rng.normal(size=(K, P, C)),
        mean=rng.normal(size=(K, P, C)),
        logvar=rng.normal(size=(K, P, C)),
    )
    if with_cond:
        out["cond_images"] = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
        out["cond_cameras"] = rng.normal(size=(3, 25))
    return out


def test_round_trip(tmp_path):
    written = [arrays(0), arrays(1, with_cond=False)]
    with LatentWriter(tmp_path, num_points=P, latent_dim=C, metadata={"step": 7}) as writer:
        writer.add("a/0/1", "a small red cube", **written[0])
        writer.add("a/0/2", "a blue torus", **written[1])
    data = LatentDataset(tmp_path)
    assert len(data) == 2 and data.encodings == K and data.metadata == {"step": 7}
    for i, (ins, caption) in enumerate([("a/0/1", "a small red cube"), ("a/0/2", "a blue torus")]):
        item = data[i]
        assert item["instance_id"] == ins and item["caption"] == caption
        for name, value in written[i].items():
            np.testing.assert_array_equal(item[name], value.astype(item[name].dtype))
            assert item[name].dtype == (np.uint8 if name == "cond_images" else np.float32)
    assert "cond_images" not in data[1]


def test_no_index_until_closed(tmp_path):
    writer = LatentWriter(tmp_path, num_points=P, latent_dim=C)
    writer.add("a/0/1", "x", **arrays(0))
    with pytest.raises(LatentFormatError, match="index.json: missing"):
        LatentDataset(tmp_path)
    writer.close()
    assert len(LatentDataset(tmp_path)) == 1


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("xyz", np.zeros((K, P, 2)), r"'xyz' expected shape \[K, 16, 3\]"),
        ("sample", np.zeros((K + 1, P, C)), r"'sample' expected shape \[K, 16, 10\]"),
        ("logvar", np.full((K, P, C), np.nan), "'logvar' expected finite values"),
        ("cond_images", np.zeros((3, 8, 8, 3), np.float32), "'cond_images' expected uint8"),
    ],
)
def test_writer_rejects_bad_arrays(tmp_path, field, value, message):
    writer = LatentWriter(tmp_path, num_points=P, latent_dim=C)
    with pytest.raises(LatentFormatError, match=message):
        writer.add("a/0/1", "x", **{**arrays(0), field: value})


def test_reader_errors_name_the_file(tmp_path):
    with LatentWriter(tmp_path, num_points=P, latent_dim=C) as writer:
        writer.add("a/0/1", "x", **arrays(0))
        writer.add("a/0/2", "y", **arrays(1))
    # A file that lost an array.
    bad = {k: v for k, v in arrays(1).items() if k != "mean"}
    np.savez(tmp_path / "objects" / "000001.npz", **bad)
    with pytest.raises(LatentFormatError, match=r"000001.npz: missing array 'mean'"):
        LatentDataset(tmp_path)[1]
    (tmp_path / "objects" / "000000.npz").unlink()
    with pytest.raises(LatentFormatError, match=r"000000.npz: missing \(listed in index.json\)"):
        LatentDataset(tmp_path)[0]
    index = json.loads((tmp_path / "index.json").read_text())
    (tmp_path / "index.json").write_text(json.dumps({**index, "version": 99}))
    with pytest.raises(LatentFormatError, match="version 99"):
        LatentDataset(tmp_path)


def test_stats_are_the_per_channel_moments_and_pool_exactly(tmp_path):
    from ga_jax.data.latents import pooled_stats

    parts = [[arrays(0), arrays(1)], [arrays(2)]]
    datasets = []
    for n, objects in enumerate(parts):
        with LatentWriter(tmp_path / str(n), num_points=P, latent_dim=C) as writer:
            for i, a in enumerate(objects):
                writer.add(f"a/0/{i}", "x", **a)
        datasets.append(LatentDataset(tmp_path / str(n)))
    for field in ("sample", "mean"):
        values = np.concatenate(
            [a[field].astype(np.float32).reshape(-1, C) for objs in parts for a in objs]
        ).astype(np.float64)
        mean, std = pooled_stats(datasets, field)
        np.testing.assert_allclose(mean, values.mean(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(std, values.std(0), rtol=1e-6)
        first = np.concatenate([a[field].reshape(-1, C) for a in parts[0]]).astype(np.float32)
        np.testing.assert_allclose(datasets[0].stats[field]["std"], first.std(0), rtol=1e-5)
    with pytest.raises(ValueError, match="expected a field"):
        pooled_stats(datasets, "logvar")


def test_load_arrays_reads_npy_and_npz_from_many_threads(tmp_path):
    # The readers' one loading path (ga_jax/data/npy.py): whole files, identical from every
    # thread (grain's prefetch threads read side by side).
    from concurrent.futures import ThreadPoolExecutor

    from ga_jax.data.npy import load_arrays

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 5)).astype(np.float32), np.arange(6)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "ab.npz", a=a, b=b)
    np.testing.assert_array_equal(load_arrays(tmp_path / "a.npy"), a)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: load_arrays(tmp_path / "ab.npz"), range(200)))
    for r in results:
        assert sorted(r) == ["a", "b"]
        np.testing.assert_array_equal(r["a"], a)
        np.testing.assert_array_equal(r["b"], b)
