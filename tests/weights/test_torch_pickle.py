"""torch_pickle: zip round trips, a legacy stream built independently here, refusals, errors.

The legacy file is built with the standard pickler and stand-in ``torch`` modules (the way torch
itself pickles), not with torch_pickle's writer, so reader and writer are checked separately.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import struct
import sys
import types
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from ga_jax.weights import torch_pickle
from ga_jax.weights.torch_pickle import ForbiddenGlobalError, StridedTensor, TorchPickleError


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    """Bit-exact equality with dtype and shape (bfloat16 compared through its bits)."""
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype == ml_dtypes.bfloat16:
        got, want = got.view(np.uint16), want.view(np.uint16)
    np.testing.assert_array_equal(got, want)


def test_zip_round_trip_dtypes_scalars_and_nesting(tmp_path: Path):
    rng = np.random.default_rng(0)
    state = {
        "conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "half": rng.normal(size=(5,)).astype(np.float16),
        "bf16": rng.normal(size=(2, 3)).astype(ml_dtypes.bfloat16),
        "double": rng.normal(size=(3,)),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),  # 0-d int64, as in BatchNorm
        "scalar": np.array(1.5, dtype=np.float32),
        "ids": np.arange(-3, 3, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "empty": np.zeros((0, 4), np.float32),
    }
    checkpoint = {"model": state, "ema": {"inner": {"w": state["conv.weight"] * 2}}, "epoch": 3}
    checkpoint.update(step=2**40, lr=1e-3, name="run", flags=[True, None], shape=(1, 2))
    path = tmp_path / "ckpt.pth"
    torch_pickle.save(path, checkpoint)
    loaded = torch_pickle.load(path)

    assert list(loaded) == list(checkpoint)
    assert list(loaded["model"]) == list(state)
    for key, want in state.items():
        assert_same(loaded["model"][key], want)
    assert_same(loaded["ema"]["inner"]["w"], state["conv.weight"] * 2)
    assert loaded["epoch"] == 3 and loaded["step"] == 2**40 and loaded["lr"] == 1e-3
    assert loaded["name"] == "run" and loaded["flags"] == [True, None]
    assert loaded["shape"] == (1, 2)
    loaded["model"]["conv.weight"][0] = 0.0  # results own writeable memory


def test_zip_round_trip_views_offsets_and_shared_storage(tmp_path: Path):
    storage = np.arange(20, dtype=np.float32)
    bf16_storage = np.arange(12).astype(ml_dtypes.bfloat16)
    state = {
        "transposed": StridedTensor(storage, 0, (4, 3), (1, 4)),  # storage[:12].reshape(3,4).T
        "offset": StridedTensor(storage, 5, (2, 3), (3, 1)),  # same storage, one record
        "strided": StridedTensor(storage, 1, (3, 2), (6, 2)),
        "broadcast": StridedTensor(storage, 2, (3, 4), (0, 1)),  # expand(): stride 0
        "bf16_t": StridedTensor(bf16_storage, 0, (3, 4), (1, 3)),
        "scalar_view": StridedTensor(storage, 19, (), ()),
    }
    path = tmp_path / "views.pth"
    torch_pickle.save(path, state)
    with zipfile.ZipFile(path) as archive:
        storages = [n for n in archive.namelist() if n.startswith("archive/data/")]
    assert len(storages) == 2  # the float32 storage is written once for five tensors

    loaded = torch_pickle.load(path)
    assert_same(loaded["transposed"], storage[:12].reshape(3, 4).T.copy())
    assert_same(loaded["offset"], storage[5:11].reshape(2, 3))
    assert_same(loaded["strided"], np.array([[1, 3], [7, 9], [13, 15]], np.float32))
    assert_same(loaded["broadcast"], np.broadcast_to(storage[2:6], (3, 4)).copy())
    assert_same(loaded["bf16_t"], bf16_storage.reshape(4, 3).T.copy())
    assert_same(loaded["scalar_view"], np.array(19, np.float32))


def test_zip_layout_is_what_torch_writes(tmp_path: Path):
    path = tmp_path / "w.pth"
    torch_pickle.save(path, {"a": np.ones((2, 2), np.float32), "b": np.zeros(3, np.int64)})
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert set(names) == {
            "archive/data.pkl",
            "archive/byteorder",
            "archive/data/0",
            "archive/data/1",
            "archive/version",
        }
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        assert archive.read("archive/byteorder") == b"little"
        assert archive.read("archive/data/1") == np.zeros(3, np.int64).tobytes()
        data_pkl = archive.read("archive/data.pkl")
    ops = list(pickletools.genops(data_pkl))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    globals_ = {arg for op, arg, _ in ops if op.name == "GLOBAL"}
    assert globals_ == {
        "collections OrderedDict",
        "torch._utils _rebuild_tensor_v2",
        "torch FloatStorage",
        "torch LongStorage",
    }
    pickletools.dis(data_pkl, out=io.StringIO())  # well-formed stream (raises otherwise)


# ----------------------------------------------------------------------------------------------
# Legacy format, built like torch's _legacy_save does


class _FakeStorage:
    def __init__(self, key: str, data: np.ndarray, type_name: str):
        self.key, self.data, self.type_name = key, data, type_name


class _FakeTensor:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, {})."""

    def __init__(self, storage: _FakeStorage, offset: int, size: tuple, stride: tuple):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, self.args


def _install_fake_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in torch modules so the stdlib pickler can write torch's GLOBAL names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage", "BFloat16Storage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)


def _legacy_bytes(obj, storages: list[_FakeStorage], views: dict[str, tuple] | None = None):
    """magic, protocol, sys_info, obj (persistent ids), sorted keys, then count + raw bytes."""
    views = views or {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, _FakeStorage):
                root = o.key.split("@")[0]  # "root@view" names a view of storage "root"
                storage_type = getattr(sys.modules["torch"], o.type_name)
                numel = next(s.data.size for s in storages if s.key == root)
                return ("storage", storage_type, root, "cpu", numel, views.get(o.key))
            return None

    f = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
    sys_info = dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4))
    pickle.dump(sys_info, f, protocol=2)
    Pickler(f, protocol=2).dump(obj)
    pickle.dump(sorted(s.key for s in storages), f, protocol=2)
    for s in sorted(storages, key=lambda s: s.key):
        f.write(struct.pack("<q", s.data.size))
        f.write(s.data.tobytes())
    return f.getvalue()


def test_legacy_format_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _install_fake_torch(monkeypatch)
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(64,)).astype(np.float32)
    counts = np.array([5], np.int64)
    halves = rng.normal(size=(6,)).astype(ml_dtypes.bfloat16)
    s0 = _FakeStorage("140", weight, "FloatStorage")
    s1 = _FakeStorage("141", counts, "LongStorage")
    s2 = _FakeStorage("142", halves, "BFloat16Storage")
    view = _FakeStorage("140@v", weight, "FloatStorage")  # legacy storage view: elements 8..24
    state = collections.OrderedDict()
    state["lin0.model.1.weight"] = _FakeTensor(s0, 0, (1, 64, 1, 1), (64, 1, 1, 1))
    state["t"] = _FakeTensor(s0, 0, (8, 4), (1, 8))  # transposed
    state["off"] = _FakeTensor(s0, 10, (3, 5), (5, 1))  # storage offset
    state["in_view"] = _FakeTensor(view, 2, (4,), (1,))  # = weight[10:14]
    state["n"] = _FakeTensor(s1, 0, (), ())
    state["bf16"] = _FakeTensor(s2, 0, (3, 2), (1, 3))
    state._metadata = collections.OrderedDict({"": {"version": 1}})  # as torch state dicts do
    raw = _legacy_bytes({"state": state, "epoch": 4}, [s0, s1, s2], {"140@v": ("140@v", 8, 16)})
    monkeypatch.undo()  # the reader must not need the stand-ins
    path = tmp_path / "legacy.pth"
    path.write_bytes(raw)
    assert not zipfile.is_zipfile(path)

    loaded = torch_pickle.load(path)
    assert loaded["epoch"] == 4
    got = loaded["state"]
    assert list(got) == ["lin0.model.1.weight", "t", "off", "in_view", "n", "bf16"]
    assert_same(got["lin0.model.1.weight"], weight.reshape(1, 64, 1, 1))
    assert_same(got["t"], weight[:32].reshape(4, 8).T.copy())
    assert_same(got["off"], weight[10:25].reshape(3, 5))
    assert_same(got["in_view"], weight[10:14])
    assert_same(got["n"], np.array(5, np.int64))
    assert_same(got["bf16"], halves.reshape(2, 3).T.copy())


def test_legacy_truncated_storage_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _install_fake_torch(monkeypatch)
    s0 = _FakeStorage("0", np.arange(10, dtype=np.float32), "FloatStorage")
    raw = _legacy_bytes({"w": _FakeTensor(s0, 0, (10,), (1,))}, [s0])
    monkeypatch.undo()
    path = tmp_path / "cut.pth"
    path.write_bytes(raw[:-4])
    with pytest.raises(TorchPickleError, match=r"cut\.pth.*truncated"):
        torch_pickle.load(path)


# ----------------------------------------------------------------------------------------------
# Refusals and errors


# Protocol-0 pickle of os.system("touch <marker>"), the classic malicious checkpoint.
def _evil_pickle(marker: Path) -> bytes:
    return b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR."


def test_refuses_os_system_in_zip(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _evil_pickle(marker))
        archive.writestr("archive/byteorder", "little")
    with pytest.raises(ForbiddenGlobalError, match=r"evil\.pth.*'os\.system'"):
        torch_pickle.load(path)
    assert not marker.exists()


def test_refuses_os_system_in_legacy_stream(tmp_path: Path):
    marker = tmp_path / "pwned"
    for name, raw in [
        ("first.pth", _evil_pickle(marker)),  # in place of the magic number
        (
            "object.pth",
            pickle.dumps(0x1950A86A20F9469CFC6C, 2)
            + pickle.dumps(1001, 2)
            + pickle.dumps({}, 2)
            + _evil_pickle(marker),
        ),  # as the checkpoint object
    ]:
        path = tmp_path / name
        path.write_bytes(raw)
        with pytest.raises(ForbiddenGlobalError, match=rf"{name}.*'os\.system'"):
            torch_pickle.load(path)
    assert not marker.exists()


def test_refuses_module_and_numpy_globals(tmp_path: Path):
    path = tmp_path / "np.pth"
    path.write_bytes(pickle.dumps({"w": np.zeros(3)}, protocol=2))
    with pytest.raises(ForbiddenGlobalError, match=r"np\.pth.*numpy"):
        torch_pickle.load(path)


def test_numeric_numpy_scalars_beside_the_state_dict_read(tmp_path: Path):
    """Checkpoints that store metrics as numpy scalars (e.g. {"instance_acc": np.float64})."""
    path = tmp_path / "with_metrics.pth"
    checkpoint = {"epoch": 3, "instance_acc": np.float64(0.875), "best": np.int32(-7)}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(checkpoint, protocol=2))
        archive.writestr("archive/byteorder", "little")
    loaded = torch_pickle.load(path)
    assert loaded == checkpoint
    assert type(loaded["instance_acc"]) is np.float64 and type(loaded["best"]) is np.int32


def test_missing_and_non_torch_files(tmp_path: Path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        torch_pickle.load(missing)
    text = tmp_path / "notes.pth"
    text.write_text("hello, not a checkpoint\n")
    with pytest.raises(TorchPickleError, match=r"notes\.pth: not a torch checkpoint"):
        torch_pickle.load(text)
    plain_zip = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("readme.txt", "x")
    with pytest.raises(TorchPickleError, match=r"plain\.zip.*data\.pkl"):
        torch_pickle.load(plain_zip)
    tensor_list = tmp_path / "tensor_list.pth"
    with zipfile.ZipFile(tensor_list, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps([1, 2], protocol=2))
    with pytest.raises(TorchPickleError, match=r"tensor_list\.pth.*expected a dict"):
        torch_pickle.load(tensor_list)


def test_writer_rejects_bad_views(tmp_path: Path):
    storage = np.arange(6, dtype=np.float32)
    with pytest.raises(ValueError, match="w: view"):
        torch_pickle.save(tmp_path / "x.pth", {"w": StridedTensor(storage, 4, (2, 2), (2, 1))})
    with pytest.raises(TypeError, match="complex"):
        torch_pickle.save(tmp_path / "x.pth", {"w": np.zeros(2, np.complex64)})
