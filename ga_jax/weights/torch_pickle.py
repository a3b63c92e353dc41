"""Read and write PyTorch ``.pth``/``.pt`` state dicts with numpy and ``pickle`` only (no torch).

Every pretrained network the project borrows (VGG16 and the LPIPS heads, Inception, PointNet++,
MUSIQ) is distributed as a torch pickle; this module reads them into numpy arrays. Two on-disk
formats exist (../shared/notes/pretrained_weights_and_samplers.md section 8):

* zip (torch >= 1.6): ``<archive>/data.pkl`` is a pickle whose tensors point, through persistent
  ids ``('storage', torch.<X>Storage, key, location, numel)``, at raw storages
  ``<archive>/data/<key>``; ``<archive>/byteorder`` and ``<archive>/version`` sit beside them.
* legacy (older torch; e.g. lpips' ``weights/v0.1/vgg.pth``): pickles in sequence in one stream
  -- magic number, protocol version 1001, a sys_info dict, the object (its persistent ids add a
  sixth field, the storage-view metadata), the list of storage keys -- then, per key in that
  order, an int64 element count followed by the storage's raw bytes. The bytes come after the
  object, so tensors are rebuilt lazily once every storage has been read.

Unpickling is restricted: ``find_class`` resolves only ``collections.OrderedDict``,
``torch._utils._rebuild_tensor{,_v2}``, ``torch._utils._rebuild_parameter``, the
``torch.<X>Storage`` type names, and numpy scalars of numeric dtypes (``numpy.dtype``,
``numpy[._]core.multiarray.scalar`` and the ``_codecs.encode(text, "latin1")`` that protocol 2
writes their bytes with: training scripts store metrics such as accuracies beside the state
dict, e.g. Point-E's PointNet++ checkpoint). Any other global (``os.system``, a pickled
``nn.Module``, ...) is refused with an error naming the file and the global, so loading a
file never runs its code, unlike ``torch.load(weights_only=False)``.

``save`` writes the zip format for format-faithful random-weight fixtures in tests: a protocol-2
pickle emitted opcode by opcode, so no stand-in ``torch`` module has to be put in ``sys.modules``.
Tensors become numpy arrays (bfloat16 through ``ml_dtypes``); ``StridedTensor`` writes a view
(offset, strides, shared storage) the way torch stores one.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import os
import pickle
import struct
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch.<name> storage type -> element dtype (storages are raw little-endian arrays of it).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}
_STORAGE_NAMES = {dtype: name for name, dtype in STORAGE_DTYPES.items()}

PathLike = str | os.PathLike


class TorchPickleError(ValueError):
    """A file is not a readable torch state dict; the message names the file and the reason."""


class ForbiddenGlobalError(TorchPickleError):
    """The pickle references a global outside the allow-list (e.g. ``os.system``)."""


# ----------------------------------------------------------------------------------------------
# Reading


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stands in for the class ``torch.<name>``; only ever compared, never called."""

    name: str


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    """Elements ``[offset, offset + numel)`` of storage ``key`` read as ``dtype``.

    offset/numel are only set for legacy storage views; otherwise the whole storage is meant.
    """

    key: str
    dtype: np.dtype
    offset: int = 0
    numel: int | None = None


@dataclasses.dataclass(frozen=True)
class _LazyTensor:
    """A tensor whose storage bytes may not have been read yet (legacy format)."""

    storage: _StorageRef
    offset: int  # in elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]  # in elements


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any):
    """``torch._utils._rebuild_tensor{,_v2}(storage, offset, size, stride[, grad, hooks, meta])``.

    requires_grad, backward hooks and metadata do not affect the values, so they are dropped.
    """
    if not isinstance(storage, _StorageRef):
        raise TypeError(f"tensor storage is a {type(storage).__name__}, not a persistent storage")
    return _LazyTensor(
        storage,
        int(storage_offset),
        tuple(int(s) for s in size),
        tuple(int(s) for s in stride),
    )


def _rebuild_parameter(data: Any, *_: Any):
    """``torch._utils._rebuild_parameter(data, requires_grad, hooks)``: a Parameter is its data."""
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a plain state dict needs and records every storage it meets."""

    def __init__(self, file: io.BytesIO, path: Path):
        super().__init__(file)
        self._path = path
        self.storage_dtypes: dict[str, np.dtype] = {}  # root storage key -> element dtype

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):
            return self._latin1_bytes
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            return self._numpy_scalar
        raise ForbiddenGlobalError(
            f"{self._path}: refusing to unpickle global '{module}.{name}'; only tensors, storages "
            "and OrderedDict are allowed (this reader loads plain state dicts, never code)"
        )

    def _latin1_bytes(self, text: Any, encoding: Any = None) -> bytes:
        """Protocol 2's spelling of a bytes object: _codecs.encode(text, 'latin1')."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise ForbiddenGlobalError(
                f"{self._path}: refusing _codecs.encode({type(text).__name__}, {encoding!r}); "
                "only the latin1 bytes of protocol 2 are allowed"
            )
        return text.encode("latin1")

    def _numpy_scalar(self, dtype: Any, data: Any = None) -> np.generic:
        """numpy's scalar(dtype, bytes) for numeric dtypes only (an object dtype would carry
        an arbitrary pickled object)."""
        if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
            raise ForbiddenGlobalError(
                f"{self._path}: refusing a numpy scalar of dtype {dtype!r}; only numeric scalars "
                "are allowed"
            )
        return np.frombuffer(data, dtype=dtype, count=1)[0]

    def persistent_load(self, pid: Any) -> _StorageRef:
        # zip: ('storage', type, key, location, numel); legacy adds view metadata
        # (view_key, offset, numel) or None.
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise TorchPickleError(f"{self._path}: unsupported persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise TorchPickleError(
                f"{self._path}: storage type {storage_type!r} is not a torch.*Storage"
            )
        dtype = STORAGE_DTYPES[storage_type.name]
        known = self.storage_dtypes.setdefault(key, dtype)
        if known != dtype:
            # torch >= 2 could alias one untyped storage with two dtypes; no state dict needs it.
            raise TorchPickleError(
                f"{self._path}: storage {key} is read as both {known} and {dtype}"
            )
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return _StorageRef(key, dtype)
        _view_key, offset, numel = view
        return _StorageRef(key, dtype, int(offset), int(numel))


def _unpickle(unpickler: _RestrictedUnpickler, what: str) -> Any:
    """unpickler.load(), with every failure turned into a TorchPickleError naming the file."""
    try:
        return unpickler.load()
    except TorchPickleError:
        raise
    except Exception as e:  # a malformed pickle can raise almost anything
        raise TorchPickleError(f"{unpickler._path}: cannot unpickle {what}: {e!r}") from e


def _read_zip(path: Path) -> tuple[Any, dict[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise TorchPickleError(
                f"{path}: a zip file but not a torch checkpoint (expected one <archive>/data.pkl, "
                f"found {sorted(pickles)})"
            )
        prefix = pickles[0][: -len("data.pkl")]
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode().strip()
            if byteorder != "little":
                raise TorchPickleError(f"{path}: byteorder '{byteorder}' is not supported")
        unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), path)
        obj = _unpickle(unpickler, pickles[0])
        storages = {}
        for key in unpickler.storage_dtypes:
            name = f"{prefix}data/{key}"
            if name not in names:
                raise TorchPickleError(f"{path}: storage record {name} is missing")
            storages[key] = archive.read(name)
    return obj, storages


def _read_legacy(path: Path) -> tuple[Any, dict[str, bytes]]:
    stream = io.BytesIO(path.read_bytes())

    def header(what: str) -> Any:
        return _unpickle(_RestrictedUnpickler(stream, path), what)

    try:
        magic = header("the magic number")
    except ForbiddenGlobalError:
        raise
    except TorchPickleError:
        magic = None  # not a pickle at all: reported below as "not a torch checkpoint"
    if magic != LEGACY_MAGIC:
        raise TorchPickleError(
            f"{path}: not a torch checkpoint (neither a zip archive with data.pkl nor a legacy "
            f"torch pickle starting with magic number {LEGACY_MAGIC:#x})"
        )
    protocol = header("the protocol version")
    if protocol != LEGACY_PROTOCOL:
        raise TorchPickleError(f"{path}: legacy protocol {protocol!r}, expected {LEGACY_PROTOCOL}")
    sys_info = header("sys_info")
    if isinstance(sys_info, Mapping) and not sys_info.get("little_endian", True):
        raise TorchPickleError(f"{path}: big-endian legacy checkpoints are not supported")
    unpickler = _RestrictedUnpickler(stream, path)
    obj = _unpickle(unpickler, "the checkpoint object")
    keys = header("the storage key list")
    storages = {}
    for key in map(str, keys):
        if key not in unpickler.storage_dtypes:
            raise TorchPickleError(f"{path}: storage {key} is listed but no tensor uses it")
        count_bytes = stream.read(8)
        if len(count_bytes) != 8:
            raise TorchPickleError(f"{path}: truncated before the size of storage {key}")
        (count,) = struct.unpack("<q", count_bytes)
        nbytes = count * unpickler.storage_dtypes[key].itemsize
        data = stream.read(nbytes)
        if count < 0 or len(data) != nbytes:
            raise TorchPickleError(f"{path}: storage {key} truncated ({len(data)} of {nbytes} B)")
        storages[key] = data
    return obj, storages


def _is_contiguous(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for n, s in zip(reversed(shape), reversed(stride)):
        if n != 1 and s != expected:  # size-1 dims may carry any stride
            return False
        expected *= n
    return True


def _tensor_to_numpy(t: _LazyTensor, storages: dict[str, bytes], path: Path) -> np.ndarray:
    ref = t.storage
    raw = storages.get(ref.key)
    if raw is None:
        raise TorchPickleError(f"{path}: storage {ref.key} was never written")
    if len(raw) % ref.dtype.itemsize:
        raise TorchPickleError(f"{path}: storage {ref.key} is not a whole number of {ref.dtype}")
    base = np.frombuffer(raw, dtype=ref.dtype)
    if ref.numel is not None:
        base = base[ref.offset : ref.offset + ref.numel]
    if len(t.shape) != len(t.stride) or min((*t.shape, *t.stride, t.offset), default=0) < 0:
        raise TorchPickleError(f"{path}: bad tensor view {t}")
    numel = math.prod(t.shape)
    if numel == 0:
        return np.zeros(t.shape, ref.dtype)
    last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride))
    if last >= base.size:
        raise TorchPickleError(
            f"{path}: tensor view {t.shape} stride {t.stride} offset {t.offset} overruns "
            f"storage {ref.key} of {base.size} elements"
        )
    if _is_contiguous(t.shape, t.stride):
        return base[t.offset : t.offset + numel].reshape(t.shape).copy()
    # General strided view: gather through explicit flat indices (also copies, so the result
    # owns its memory and is writeable).
    index = np.full((), t.offset, dtype=np.int64)
    for n, s in zip(t.shape, t.stride):
        index = index[..., None] + np.arange(n, dtype=np.int64) * s
    return base[index]


def _materialize(obj: Any, storages: dict[str, bytes], path: Path) -> Any:
    if isinstance(obj, _LazyTensor):
        return _tensor_to_numpy(obj, storages, path)
    if isinstance(obj, Mapping):
        return {k: _materialize(v, storages, path) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_materialize(v, storages, path) for v in obj)
    return obj


def load(path: PathLike) -> dict[str, Any]:
    """Read a torch state dict (zip or legacy format) without torch.

    Returns a dict (OrderedDicts become dicts, insertion order kept) whose tensors are numpy
    arrays with torch's shapes and dtypes (bfloat16 as ``ml_dtypes.bfloat16``); nested dicts,
    lists and plain Python values (e.g. ``epoch``) come back as they were saved.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      TorchPickleError (a ValueError): not a torch file, malformed, or it references a global
        other than tensors/storages/OrderedDict (the message names the file and the global).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such torch checkpoint file")
    obj, storages = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    result = _materialize(obj, storages, path)
    if not isinstance(result, dict):
        kind = type(obj).__name__
        raise TorchPickleError(f"{path}: expected a dict at the top level, got a {kind}")
    return result


# ----------------------------------------------------------------------------------------------
# Writing (zip format, for test fixtures)


@dataclasses.dataclass(frozen=True)
class StridedTensor:
    """A tensor written as a view into a 1-D storage, the way torch stores views.

    Tensors given the same ``storage`` object share one storage record in the file.
    """

    storage: np.ndarray  # [numel], 1-D
    offset: int  # in elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]  # in elements


def _contiguous_stride(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, step = [], 1
    for n in reversed(shape):
        stride.append(step)
        step *= n
    return tuple(reversed(stride))


class _PickleWriter:
    """Emits a protocol-2 pickle opcode by opcode (GLOBAL names written verbatim)."""

    def __init__(self) -> None:
        self.out = bytearray(pickle.PROTO + b"\x02")
        self.storages: dict[int, tuple[str, np.ndarray]] = {}  # id(storage) -> (key, storage)

    def global_(self, module: str, name: str) -> None:
        self.out += pickle.GLOBAL + f"{module}\n{name}\n".encode()

    def ordered_dict(self, items: list[tuple[Any, Any]]) -> None:
        self.global_("collections", "OrderedDict")
        self.out += pickle.EMPTY_TUPLE + pickle.REDUCE
        if items:
            self.out += pickle.MARK
            for k, v in items:
                self.value(k)
                self.value(v)
            self.out += pickle.SETITEMS

    def sequence(self, values: Any) -> None:
        self.out += pickle.MARK
        for v in values:
            self.value(v)
        self.out += pickle.TUPLE

    def tensor(self, t: StridedTensor) -> None:
        storage = t.storage
        if storage.dtype not in _STORAGE_NAMES:
            raise TypeError(f"no torch storage type for dtype {storage.dtype}")
        entry = self.storages.setdefault(id(storage), (str(len(self.storages)), storage))
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out += pickle.MARK
        # Persistent id ('storage', torch.<X>Storage, key, 'cpu', numel).
        self.out += pickle.MARK
        self.value("storage")
        self.global_("torch", _STORAGE_NAMES[storage.dtype])
        self.value(entry[0])
        self.value("cpu")
        self.value(storage.size)
        self.out += pickle.TUPLE + pickle.BINPERSID
        self.value(t.offset)
        self.sequence(t.shape)
        self.sequence(t.stride)
        self.value(False)  # requires_grad
        self.ordered_dict([])  # backward hooks
        self.out += pickle.TUPLE + pickle.REDUCE

    def value(self, v: Any) -> None:
        if isinstance(v, np.ndarray):
            shape = tuple(v.shape)
            self.tensor(StridedTensor(v.reshape(-1).copy(), 0, shape, _contiguous_stride(shape)))
        elif isinstance(v, StridedTensor):
            self.tensor(v)
        elif isinstance(v, Mapping):
            self.ordered_dict(list(v.items()))
        elif v is None:
            self.out += pickle.NONE
        elif isinstance(v, bool):
            self.out += pickle.NEWTRUE if v else pickle.NEWFALSE
        elif isinstance(v, int):
            if 0 <= v < 256:
                self.out += pickle.BININT1 + bytes([v])
            elif -(2**31) <= v < 2**31:
                self.out += pickle.BININT + struct.pack("<i", v)
            else:
                encoded = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
                self.out += pickle.LONG1 + bytes([len(encoded)]) + encoded
        elif isinstance(v, float):
            self.out += pickle.BINFLOAT + struct.pack(">d", v)
        elif isinstance(v, str):
            encoded = v.encode("utf-8")
            self.out += pickle.BINUNICODE + struct.pack("<I", len(encoded)) + encoded
        elif isinstance(v, tuple):
            self.sequence(v)
        elif isinstance(v, list):
            self.out += pickle.EMPTY_LIST
            if v:
                self.out += pickle.MARK
                for item in v:
                    self.value(item)
                self.out += pickle.APPENDS
        else:
            raise TypeError(f"cannot write a {type(v).__name__} into a torch state dict")


def save(path: PathLike, state_dict: Mapping[str, Any]) -> None:
    """Write ``state_dict`` as a torch zip checkpoint (what ``torch.save`` writes since 1.6).

    Values may be numpy arrays (float32/64/16, bfloat16, int8..64, uint8, bool; 0-d included),
    ``StridedTensor`` views, nested mappings, lists, tuples, str, int, float, bool and None.
    Meant for test fixtures in the exact key layout of a public checkpoint.
    """
    if sys.byteorder != "little":
        raise NotImplementedError("storages are written in native order, which must be little")
    for name, t in _iter_tensors(state_dict):
        if t.storage.ndim != 1:
            raise ValueError(f"{name}: StridedTensor storage must be 1-D, got {t.storage.shape}")
        if (
            math.prod(t.shape)
            and t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride)) >= t.storage.size
        ):
            raise ValueError(f"{name}: view {t.shape}/{t.stride}+{t.offset} overruns its storage")
    writer = _PickleWriter()
    writer.value(state_dict)
    writer.out += pickle.STOP
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", bytes(writer.out))
        archive.writestr("archive/byteorder", "little")
        for key, storage in writer.storages.values():
            archive.writestr(f"archive/data/{key}", np.ascontiguousarray(storage).tobytes())
        archive.writestr("archive/version", "3\n")


def _iter_tensors(obj: Any, prefix: str = ""):
    """(dotted name, StridedTensor) for every StridedTensor in a nested structure."""
    if isinstance(obj, StridedTensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _iter_tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _iter_tensors(v, f"{prefix}.{i}")
