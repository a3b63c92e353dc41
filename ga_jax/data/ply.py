"""PLY files: a reader of vertex properties for any layout users bring, and a binary writer.

Point clouds reach us from our own FPS files (`fps-4096.ply`: binary little-endian,
`float x, y, z`) and from users who edited a cloud in MeshLab, Blender or CloudCompare. Those
tools write ASCII or binary (either byte order), float or double coordinates, extra vertex
properties (normals, colours, quality, ...) and further elements (faces, edges) before or after
the vertices. The reader takes all of that and keeps what we need: the vertex element's scalar
properties, by name (`read_ply_vertices`), or just its xyz as float32 [N, 3]
(`read_ply_points`).

Format (Turk 1994; http://paulbourke.net/dataformats/ply/): an ASCII header

    ply
    format ascii|binary_little_endian|binary_big_endian 1.0
    comment ... / obj_info ...              (ignored)
    element <name> <count>
    property <type> <name>                  (scalar)
    property list <count type> <type> <name>
    ...
    end_header

then the elements' rows in header order. Types: char/int8, uchar/uint8, short/int16,
ushort/uint16, int/int32, uint/uint32, float/float32, double/float64. Lines may end in
"\\n" or "\\r\\n".

Reading stops after the vertex element: the elements before it are walked over (their rows
must be complete, list rows included), the ones after it are not read at all, so a damaged
face list behind intact vertices does not reject the cloud. Every problem raises PlyError (a
ValueError) whose message starts with the file's path and says what was expected and what
was found.

The writer (`write_ply_vertices`, `write_ply_points`) writes one binary little-endian vertex
element; `write_ply_points` produces exactly the bytes of the data's `fps-4096.ply` files.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = [
    "PLY_TYPES",
    "PlyError",
    "read_ply_points",
    "read_ply_vertices",
    "write_ply_points",
    "write_ply_vertices",
]

# PLY type name -> numpy type code (byte order added per file). Both spellings of the spec.
PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}

# What the writer calls each numpy dtype (the classic names, which every tool reads).
_WRITE_TYPES = {
    "f4": "float",
    "f8": "double",
    "i1": "char",
    "u1": "uchar",
    "i2": "short",
    "u2": "ushort",
    "i4": "int",
    "u4": "uint",
}

_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}


class PlyError(ValueError):
    """A PLY file is missing, unreadable, corrupt, truncated or lacks what was asked for.

    The message starts with the file's path and says what was expected and what was found.
    """


@dataclasses.dataclass(frozen=True)
class _Property:
    name: str
    code: str  # numpy type code of the value(s), e.g. "f4"
    count_code: str | None = None  # numpy type code of a list's length; None for a scalar


@dataclasses.dataclass(frozen=True)
class _Element:
    name: str
    count: int
    properties: tuple[_Property, ...]

    @property
    def has_lists(self) -> bool:
        return any(p.count_code is not None for p in self.properties)


@dataclasses.dataclass(frozen=True)
class _Header:
    format: str  # a key of _FORMATS
    elements: tuple[_Element, ...]
    body_offset: int  # first byte after the header's end_header line


# --------------------------------------------------------------------------------------------
# Header


def _ply_type(word: str, path: Path, line: str) -> str:
    if word not in PLY_TYPES:
        raise PlyError(
            f"{path}: unknown PLY type {word!r} in header line {line!r} (expected one of "
            f"{', '.join(sorted(set(PLY_TYPES)))})"
        )
    return PLY_TYPES[word]


def _header_lines(data: bytes, path: Path) -> tuple[list[str], int]:
    """The header's lines after 'ply' up to (not including) end_header, and the body offset."""
    if not (data.startswith(b"ply\n") or data.startswith(b"ply\r\n")):
        raise PlyError(
            f"{path}: expected a PLY file (first line 'ply', header ending in 'end_header'), "
            f"found {data[:16]!r}..."
        )
    lines: list[str] = []
    pos = data.find(b"\n") + 1
    while True:
        newline = data.find(b"\n", pos)
        if newline < 0:
            raise PlyError(
                f"{path}: expected a PLY header ending in an 'end_header' line, found end of "
                f"file after {len(lines) + 1} header lines (truncated or not a PLY file?)"
            )
        raw = data[pos:newline].rstrip(b"\r")
        pos = newline + 1
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError as e:
            raise PlyError(f"{path}: expected an ASCII PLY header, found {raw[:40]!r}") from e
        if line.strip() == "end_header":
            return lines, pos
        lines.append(line)


def _parse_header(data: bytes, path: Path) -> _Header:
    lines, body_offset = _header_lines(data, path)
    fmt = None
    elements: list[tuple[str, int, list[_Property]]] = []
    for line in lines:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) == 3:
            if words[1] not in _FORMATS:
                raise PlyError(
                    f"{path}: expected format ascii, binary_little_endian or "
                    f"binary_big_endian, found {line!r}"
                )
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            try:
                count = int(words[2])
            except ValueError:
                count = -1
            if count < 0:
                raise PlyError(
                    f"{path}: expected 'element <name> <count>' with a count >= 0, found {line!r}"
                )
            elements.append((words[1], count, []))
        elif words[0] == "property" and elements and len(words) == 3:
            elements[-1][2].append(_Property(words[2], _ply_type(words[1], path, line)))
        elif words[0] == "property" and elements and len(words) == 5 and words[1] == "list":
            count_code = _ply_type(words[2], path, line)
            if count_code[0] == "f":
                raise PlyError(f"{path}: expected an integer list length type, found {line!r}")
            elements[-1][2].append(_Property(words[4], _ply_type(words[3], path, line), count_code))
        else:
            raise PlyError(
                f"{path}: unexpected PLY header line {line!r} (expected format, element, "
                f"property, comment or obj_info lines, properties after their element)"
            )
    if fmt is None:
        raise PlyError(f"{path}: expected a 'format ...' line in the PLY header, found none")
    return _Header(fmt, tuple(_Element(n, c, tuple(p)) for n, c, p in elements), body_offset)


# --------------------------------------------------------------------------------------------
# Binary body


def _truncated(path: Path, element: _Element, need: int, have: int) -> PlyError:
    return PlyError(
        f"{path}: expected {need} bytes of data for element {element.name!r} "
        f"({element.count} rows), found {have} (truncated file?)"
    )


def _fixed_row_dtype(lengths: list[int], element: _Element, order: str) -> np.dtype:
    """Structured dtype of one row when every list of the element has the given lengths."""
    fields, lists = [], iter(lengths)
    for i, prop in enumerate(element.properties):
        if prop.count_code is None:
            fields.append((f"p{i}", order + prop.code))
        else:
            fields.append((f"c{i}", order + prop.count_code))
            fields.append((f"p{i}", order + prop.code, (next(lists),)))
    return np.dtype(fields)


def _first_row_lengths(
    data: bytes, offset: int, element: _Element, order: str, path: Path
) -> list[int]:
    """The list lengths of the element's first row (read without assuming any)."""
    lengths, pos = [], offset
    for prop in element.properties:
        if prop.count_code is None:
            pos += np.dtype(prop.code).itemsize
            continue
        size = np.dtype(prop.count_code).itemsize
        if pos + size > len(data):
            raise _truncated(path, element, pos + size - offset, len(data) - offset)
        n = int(np.frombuffer(data, order + prop.count_code, 1, pos)[0])
        if n < 0:
            raise PlyError(f"{path}: negative list length {n} in element {element.name!r}")
        lengths.append(n)
        pos += size + n * np.dtype(prop.code).itemsize
    return lengths


def _walk_binary_rows(
    data: bytes, offset: int, element: _Element, order: str, path: Path
) -> tuple[dict[str, np.ndarray], int]:
    """Row by row, for an element whose lists vary in length (slow; rare before vertices)."""
    columns = {
        p.name: np.empty(element.count, np.dtype(p.code))
        for p in element.properties
        if p.count_code is None
    }
    pos = offset
    try:
        for row in range(element.count):
            for prop in element.properties:
                if prop.count_code is None:
                    columns[prop.name][row] = np.frombuffer(data, order + prop.code, 1, pos)[0]
                    pos += np.dtype(prop.code).itemsize
                    continue
                n = int(np.frombuffer(data, order + prop.count_code, 1, pos)[0])
                if n < 0:
                    raise PlyError(
                        f"{path}: negative list length {n} in element {element.name!r} row {row}"
                    )
                pos += np.dtype(prop.count_code).itemsize + n * np.dtype(prop.code).itemsize
        if pos > len(data):
            raise ValueError
    except ValueError as e:  # np.frombuffer past the end
        if isinstance(e, PlyError):
            raise
        raise _truncated(path, element, pos - offset, len(data) - offset) from e
    return columns, pos


def _read_binary_element(
    data: bytes, offset: int, element: _Element, order: str, path: Path
) -> tuple[dict[str, np.ndarray], int]:
    """The element's scalar columns (native byte order) and the offset of the next element.

    Fast path: assume every row's lists are as long as the first row's (triangle meshes),
    read all rows as one structured array, and check the assumption.
    """
    if element.count:
        lengths = _first_row_lengths(data, offset, element, order, path)
    else:
        lengths = [0] * sum(p.count_code is not None for p in element.properties)
    dtype = _fixed_row_dtype(lengths, element, order)
    end = offset + element.count * dtype.itemsize
    if end > len(data):
        if not element.has_lists:
            raise _truncated(path, element, end - offset, len(data) - offset)
        return _walk_binary_rows(data, offset, element, order, path)
    rows = np.frombuffer(data, dtype, element.count, offset)
    counts = [f"c{i}" for i, p in enumerate(element.properties) if p.count_code is not None]
    if any(np.any(rows[c] != n) for c, n in zip(counts, lengths, strict=True)):
        return _walk_binary_rows(data, offset, element, order, path)
    columns = {
        p.name: rows[f"p{i}"].astype(np.dtype(p.code))
        for i, p in enumerate(element.properties)
        if p.count_code is None
    }
    return columns, end


# --------------------------------------------------------------------------------------------
# ASCII body


def _ascii_values(tokens, code: str, path: Path, element: _Element) -> np.ndarray:
    try:
        values = np.array(tokens, dtype=bytes).astype(np.float64)
    except ValueError as e:
        raise PlyError(
            f"{path}: expected numbers in the rows of element {element.name!r}, found "
            f"{type(e).__name__}: {e}"
        ) from e
    return values.astype(np.dtype(code))


def _read_ascii_element(
    tokens: list[bytes], pos: int, element: _Element, path: Path
) -> tuple[dict[str, np.ndarray], int]:
    """The element's scalar columns and the token index of the next element (one token per
    value; rows need not sit on separate lines)."""
    scalar_at: dict[str, list[int]] = {p.name: [] for p in element.properties if not p.count_code}
    for _ in range(element.count):
        for prop in element.properties:
            if pos >= len(tokens):
                raise PlyError(
                    f"{path}: expected {element.count} rows of element {element.name!r}, "
                    f"found end of file (truncated file?)"
                )
            if prop.count_code is None:
                scalar_at[prop.name].append(pos)
                pos += 1
                continue
            try:
                n = int(tokens[pos])
            except ValueError as e:
                raise PlyError(
                    f"{path}: expected a list length in element {element.name!r}, found "
                    f"{tokens[pos][:20]!r}"
                ) from e
            if n < 0:
                raise PlyError(f"{path}: negative list length {n} in element {element.name!r}")
            pos += 1 + n
    if pos > len(tokens):
        raise PlyError(
            f"{path}: expected {element.count} rows of element {element.name!r}, found end of "
            f"file (truncated file?)"
        )
    codes = {p.name: p.code for p in element.properties}
    columns = {
        name: _ascii_values([tokens[i] for i in at], codes[name], path, element)
        for name, at in scalar_at.items()
    }
    return columns, pos


def _read_ascii_fixed(
    tokens: list[bytes], pos: int, element: _Element, path: Path
) -> tuple[dict[str, np.ndarray], int]:
    """_read_ascii_element for an element without lists: one reshape instead of a walk."""
    width = len(element.properties)
    end = pos + element.count * width
    if end > len(tokens):
        raise PlyError(
            f"{path}: expected {element.count} rows x {width} values of element "
            f"{element.name!r}, found {len(tokens) - pos} values (truncated file?)"
        )
    table = np.array(tokens[pos:end], dtype=bytes).reshape(element.count, width)
    columns = {
        p.name: _ascii_values(table[:, i], p.code, path, element)
        for i, p in enumerate(element.properties)
    }
    return columns, end


# --------------------------------------------------------------------------------------------
# Public reader


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise PlyError(f"{path}: cannot read the PLY file: {type(e).__name__}: {e}") from e


def read_ply_vertices(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The scalar properties of the 'vertex' element of any PLY file, by name, in file order.

    Each value is a 1-D numpy array [N] of the declared type in native byte order (float ->
    float32, uchar -> uint8, ...). List properties of the vertex element are skipped. Other
    elements are walked over (before the vertices) or not read (after). No check of the
    values (NaN is returned as read): callers check what they use. Raises PlyError naming the
    file for an unreadable, corrupt or truncated file or one without a vertex element.
    """
    path = Path(path)
    data = _read_bytes(path)
    header = _parse_header(data, path)
    names = [e.name for e in header.elements]
    if "vertex" not in names:
        raise PlyError(f"{path}: expected a 'vertex' element, found elements {names}")
    order = _FORMATS[header.format]
    if order is None:
        tokens = data[header.body_offset :].split()
        pos = 0
        for element in header.elements:
            reader = _read_ascii_element if element.has_lists else _read_ascii_fixed
            columns, pos = reader(tokens, pos, element, path)
            if element.name == "vertex":
                return columns
    else:
        pos = header.body_offset
        for element in header.elements:
            columns, pos = _read_binary_element(data, pos, element, order, path)
            if element.name == "vertex":
                return columns
    raise AssertionError("unreachable: the vertex element is in the header")


def read_ply_points(path: str | os.PathLike) -> np.ndarray:
    """float32 [N, 3] vertex positions (properties x, y, z) of any PLY file.

    Any format, byte order and numeric type of x, y, z; other vertex properties (normals,
    colours, ...) and other elements (faces, ...) are ignored (read_ply_vertices). For the
    data's `fps-4096.ply` (binary little-endian float x, y, z) the values are the stored
    float32 bits. Raises PlyError naming the file when x, y or z is missing or a coordinate
    is not finite as float32 (NaN, inf, or a double beyond the float32 range), besides
    read_ply_vertices' errors.
    """
    columns = read_ply_vertices(path)
    missing = [axis for axis in "xyz" if axis not in columns]
    if missing:
        raise PlyError(
            f"{path}: expected vertex properties x, y and z, found {list(columns)} "
            f"(missing {', '.join(missing)})"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        points = np.stack([columns[a].astype(np.float32) for a in "xyz"], axis=-1)
    if not np.all(np.isfinite(points)):
        bad = int(np.sum(~np.all(np.isfinite(points), axis=-1)))
        raise PlyError(
            f"{path}: expected finite float32 coordinates, found NaN/inf in {bad} of "
            f"{points.shape[0]} vertices"
        )
    return points


# --------------------------------------------------------------------------------------------
# Writer


def write_ply_vertices(path: str | os.PathLike, columns: Mapping[str, np.ndarray]) -> None:
    """Write one binary little-endian 'vertex' element with the given properties in order.

    columns: name -> [N] array; dtypes float32 (`float`), float64 (`double`), int8/uint8,
    int16/uint16, int32/uint32 (`char`/`uchar`, `short`/`ushort`, `int`/`uint`). Float
    columns must be finite. Raises ValueError naming the file and the column before writing.
    """
    path = Path(path)
    arrays = {name: np.asarray(value) for name, value in columns.items()}
    if not arrays:
        raise ValueError(f"{path}: columns: expected at least one vertex property, got none")
    count = None
    for name, array in arrays.items():
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"{path}: column name {name!r}: expected a word without spaces")
        if array.ndim != 1 or (count is not None and array.shape[0] != count):
            expected = "[N]" if count is None else f"[{count}] like the first column"
            raise ValueError(
                f"{path}: column {name!r}: expected shape {expected}, got {array.shape}"
            )
        count = array.shape[0]
        code = array.dtype.str[1:]
        if code not in _WRITE_TYPES:
            raise ValueError(
                f"{path}: column {name!r}: expected a dtype among float32, float64, (u)int8, "
                f"(u)int16, (u)int32, got {array.dtype}"
            )
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ValueError(f"{path}: column {name!r}: expected finite values, found NaN/inf")
    props = "".join(f"property {_WRITE_TYPES[a.dtype.str[1:]]} {n}\n" for n, a in arrays.items())
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {count}\n{props}end_header\n"
    rows = np.empty(count, np.dtype([(n, "<" + a.dtype.str[1:]) for n, a in arrays.items()]))
    for name, array in arrays.items():
        rows[name] = array
    path.write_bytes(header.encode("ascii") + rows.tobytes())


def write_ply_points(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write points [N, 3] as the binary little-endian `float x, y, z` PLY of the data's
    fps-4096.ply files (cast to float32)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{path}: points: expected shape [N, 3], got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{path}: points: expected finite coordinates, found NaN/inf")
    points = points.astype(np.float32)
    write_ply_vertices(path, {"x": points[:, 0], "y": points[:, 1], "z": points[:, 2]})
