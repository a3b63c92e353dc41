"""Tests of ga_jax.data.source: records of dataset.json chunks, class filter, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ga_jax.data.gbuffer import GBufferError
from ga_jax.data.source import VaeRecordSource, chunk_view_count, read_record
from tests.data.fake_vae_data import make_fake_dataset


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    gbuffer, fps, _ = make_fake_dataset(tmp_path_factory.mktemp("vae_source"), size=16)
    return gbuffer, fps


def test_two_records_per_chunk(roots):
    gbuffer, fps = roots
    source = VaeRecordSource(gbuffer, fps)
    listing = json.loads((gbuffer / "dataset.json").read_text())
    chunks = [c for name in listing for c in listing[name]]
    assert len(source) == 2 * len(chunks) == 12
    for index in range(len(source)):
        record = source[index]
        assert record.record_index == index
        assert record.chunk == chunks[index // 2] and record.half == index % 2
        assert record.chunk_path == str(gbuffer / chunks[index // 2])
    with pytest.raises(IndexError):
        source[12]
    # repr is deterministic (grain compares sources by repr when restoring).
    assert repr(source) == repr(VaeRecordSource(gbuffer, fps)) and "0x" not in repr(source)


def test_class_filter_and_max_chunks(roots):
    gbuffer, fps = roots
    balls = VaeRecordSource(gbuffer, fps, classes=("Balls",))
    assert balls.chunks == ("Balls/0/0/1", "Balls/0/0/2") and len(balls) == 4
    assert len(VaeRecordSource(gbuffer, fps, classes="Balls")) == 4
    assert len(VaeRecordSource(gbuffer, fps, max_chunks=3)) == 6
    with pytest.raises(ValueError, match=r"classes: \['Cubes'\] not found"):
        VaeRecordSource(gbuffer, fps, classes=("Cubes",))
    with pytest.raises(ValueError, match="max_chunks"):
        VaeRecordSource(gbuffer, fps, max_chunks=0)


def test_bad_dataset_json_names_the_file(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path}/dataset.json: cannot read"):
        VaeRecordSource(tmp_path, tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(ValueError, match="dataset.json: not valid JSON"):
        VaeRecordSource(tmp_path, tmp_path)
    (tmp_path / "dataset.json").write_text('{"A": "x/1"}')
    with pytest.raises(ValueError, match="expected a JSON object mapping class names to lists"):
        VaeRecordSource(tmp_path, tmp_path)
    (tmp_path / "dataset.json").write_text('{"A": []}')
    with pytest.raises(ValueError, match="no chunks listed"):
        VaeRecordSource(tmp_path, tmp_path)


def test_read_record(roots):
    gbuffer, fps = roots
    record = VaeRecordSource(gbuffer, fps)[5]
    chunk, points = read_record(record, [3, 9], min_points=10)
    np.testing.assert_array_equal(chunk.views, [3, 9])
    assert chunk.rgb.shape == (2, 16, 16, 3) and points.shape == (256, 3)
    assert chunk_view_count(record.chunk_path) == 16
    assert VaeRecordSource(gbuffer, fps).caption(5) == "a sphere number 1"
    with pytest.raises(GBufferError, match=r"fps-4096.ply: expected at least fps_points = 300"):
        read_record(record, [0], min_points=300)
