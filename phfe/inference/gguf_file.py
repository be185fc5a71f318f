"""GGUF header parsing: metadata and tensor tables from a memory map, without reading tensor data.

gguf-py's ``GGUFReader`` builds one numpy object per vocabulary entry and takes seconds on a 262k-token
vocabulary; this parser decodes numeric arrays in bulk and strings in one tight loop, and checks every
length, count and offset against the file so that a corrupt file is a :class:`GGUFFormatError`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from phfe.inference.errors import GGUFFormatError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_ARRAY_NESTING = 4

_SCALAR_DTYPES: dict[GGUFValueType, np.dtype] = {
    GGUFValueType.UINT8: np.dtype("<u1"),
    GGUFValueType.INT8: np.dtype("<i1"),
    GGUFValueType.UINT16: np.dtype("<u2"),
    GGUFValueType.INT16: np.dtype("<i2"),
    GGUFValueType.UINT32: np.dtype("<u4"),
    GGUFValueType.INT32: np.dtype("<i4"),
    GGUFValueType.FLOAT32: np.dtype("<f4"),
    GGUFValueType.BOOL: np.dtype("?"),
    GGUFValueType.UINT64: np.dtype("<u8"),
    GGUFValueType.INT64: np.dtype("<i8"),
    GGUFValueType.FLOAT64: np.dtype("<f8"),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's table entry; ``shape`` is in PyTorch order (outermost first, ``(out, in)``)."""

    name: str
    type: GGMLQuantizationType
    shape: tuple[int, ...]
    n_elements: int
    n_bytes: int
    offset: int  # absolute byte offset of the data in the file


@dataclass(frozen=True)
class ValueType:
    """The GGUF type of a metadata value; ``item`` is the element type of an array."""

    kind: GGUFValueType
    item: GGUFValueType | None = None


@dataclass
class GGUFHeader:
    """Everything in a GGUF file except the tensor data."""

    path: str
    version: int
    metadata: dict[str, Any]
    value_types: dict[str, ValueType]
    tensors: dict[str, TensorInfo]
    alignment: int
    data_offset: int
    file_size: int


class _Cursor:
    """Bounds-checked little-endian reads from a buffer; every overrun is a GGUFFormatError."""

    def __init__(self, buf: memoryview, path: str):
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.path = path

    def need(self, n: int, what: str) -> int:
        start = self.pos
        if n < 0 or start + n > self.size:
            raise GGUFFormatError(
                self.path,
                f"truncated or corrupt: {what} needs {n} bytes at offset {start}, the file has {self.size} bytes",
            )
        self.pos = start + n
        return start

    def u32(self, what: str) -> int:
        return _U32.unpack_from(self.buf, self.need(4, what))[0]

    def u64(self, what: str) -> int:
        return _U64.unpack_from(self.buf, self.need(8, what))[0]

    def string(self, what: str) -> str:
        length = self.u64(f"length of {what}")
        start = self.need(length, what)
        return _decode(self.buf[start : start + length], self.path, what)

    def string_array(self, count: int, what: str) -> list[str]:
        if count * 8 > self.size - self.pos:  # every string needs at least its 8-byte length
            self.need(count * 8, what)
        buf, path, out = self.buf, self.path, []
        pos, size, unpack, append = self.pos, self.size, _U64.unpack_from, out.append
        for index in range(count):
            if pos + 8 > size:
                self.pos = pos
                self.need(8, f"length of {what}[{index}]")
            end = pos + 8 + unpack(buf, pos)[0]
            if end > size:
                self.pos = pos + 8
                self.need(end - pos - 8, f"{what}[{index}]")
            append(_decode(buf[pos + 8 : end], path, f"{what}[{index}]"))
            pos = end
        self.pos = pos
        return out

    def array(self, dtype: np.dtype, count: int, what: str) -> np.ndarray:
        start = self.need(count * dtype.itemsize, what)
        return np.frombuffer(self.buf, dtype=dtype, count=count, offset=start).copy()


def _decode(raw: memoryview, path: str, what: str) -> str:
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise GGUFFormatError(path, f"{what} is not valid UTF-8 ({exc.reason})") from None


def _value_type(cur: _Cursor, key: str) -> GGUFValueType:
    raw = cur.u32(f"type of {key!r}")
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise GGUFFormatError(cur.path, f"metadata key {key!r} has unknown value type {raw}") from None


def _read_value(cur: _Cursor, kind: GGUFValueType, key: str, depth: int = 0) -> tuple[Any, ValueType]:
    if kind == GGUFValueType.STRING:
        return cur.string(f"value of {key!r}"), ValueType(kind)
    if kind == GGUFValueType.ARRAY:
        item = _value_type(cur, f"{key}[]")
        count = cur.u64(f"length of array {key!r}")
        if item == GGUFValueType.STRING:
            return cur.string_array(count, key), ValueType(kind, item)
        if item == GGUFValueType.ARRAY:
            if depth >= MAX_ARRAY_NESTING:
                raise GGUFFormatError(cur.path, f"{key!r}: arrays nested deeper than {MAX_ARRAY_NESTING}")
            if count * 12 > cur.size - cur.pos:  # every inner array needs its type and length
                cur.need(count * 12, f"nested array {key!r}")
            values = [_read_value(cur, item, f"{key}[{i}]", depth + 1)[0] for i in range(count)]
            return values, ValueType(kind, item)
        return cur.array(_SCALAR_DTYPES[item], count, f"array {key!r}"), ValueType(kind, item)
    dtype = _SCALAR_DTYPES[kind]
    value = cur.array(dtype, 1, f"value of {key!r}")[0].item()
    return value, ValueType(kind)


def _read_tensor_info(cur: _Cursor) -> tuple[str, GGMLQuantizationType, tuple[int, ...], int]:
    name = cur.string("tensor name")
    n_dims = cur.u32(f"dimension count of tensor {name!r}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise GGUFFormatError(cur.path, f"tensor {name!r} has {n_dims} dimensions (1..{MAX_DIMS} allowed)")
    dims = [cur.u64(f"dimension {i} of tensor {name!r}") for i in range(n_dims)]
    raw_type = cur.u32(f"type of tensor {name!r}")
    try:
        ggml_type = GGMLQuantizationType(raw_type)
    except ValueError:
        raise GGUFFormatError(cur.path, f"tensor {name!r} has unknown ggml type id {raw_type}") from None
    offset = cur.u64(f"data offset of tensor {name!r}")
    return name, ggml_type, tuple(reversed(dims)), offset


def _tensor_size(path: str, name: str, ggml_type: GGMLQuantizationType, shape: tuple[int, ...]) -> tuple[int, int]:
    block_elems, block_bytes = GGML_QUANT_SIZES[ggml_type]
    if shape[-1] % block_elems:
        raise GGUFFormatError(
            path,
            f"tensor {name!r}: row length {shape[-1]} is not a multiple of the "
            f"{ggml_type.name} block size {block_elems}",
        )
    n_elements = 1
    for dim in shape:
        n_elements *= dim
    return n_elements, n_elements // block_elems * block_bytes


def parse_header(buf: memoryview | bytes, path: str) -> GGUFHeader:
    """Parse a whole GGUF file held in ``buf`` (usually a memory map); tensor data is not touched."""
    cur = _Cursor(memoryview(buf), path)
    magic = bytes(cur.buf[cur.need(4, "magic") : 4])
    if magic != GGUF_MAGIC:
        raise GGUFFormatError(path, f"not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")
    version = cur.u32("version")
    if version & 0xFFFF == 0 and version:
        raise GGUFFormatError(path, "big-endian GGUF files are not supported")
    if version not in SUPPORTED_VERSIONS:
        raise GGUFFormatError(path, f"unsupported GGUF version {version} (supported: {SUPPORTED_VERSIONS})")
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    if n_kv * 13 > cur.size or n_tensors * 24 > cur.size:  # smallest possible entries
        raise GGUFFormatError(
            path, f"corrupt header: {n_kv} metadata entries and {n_tensors} tensors cannot fit in {cur.size} bytes"
        )

    metadata: dict[str, Any] = {}
    value_types: dict[str, ValueType] = {}
    for _ in range(n_kv):
        key = cur.string("metadata key")
        if key in metadata:
            raise GGUFFormatError(path, f"duplicate metadata key {key!r}")
        metadata[key], value_types[key] = _read_value(cur, _value_type(cur, key), key)

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if value_types.get("general.alignment", ValueType(GGUFValueType.UINT32)).kind != GGUFValueType.UINT32 or (
        not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1)
    ):
        raise GGUFFormatError(path, f"general.alignment must be a power-of-two uint32, got {alignment!r}")

    entries = [_read_tensor_info(cur) for _ in range(n_tensors)]
    data_offset = -(-cur.pos // alignment) * alignment
    tensors: dict[str, TensorInfo] = {}
    for name, ggml_type, shape, rel_offset in entries:
        if name in tensors:
            raise GGUFFormatError(path, f"duplicate tensor name {name!r}")
        n_elements, n_bytes = _tensor_size(path, name, ggml_type, shape)
        if rel_offset % alignment:
            raise GGUFFormatError(path, f"tensor {name!r}: data offset {rel_offset} is not aligned to {alignment}")
        offset = data_offset + rel_offset
        if offset + n_bytes > cur.size:
            raise GGUFFormatError(
                path,
                f"tensor {name!r}: data [{offset}, {offset + n_bytes}) runs past the end of the file "
                f"({cur.size} bytes; truncated download?)",
            )
        tensors[name] = TensorInfo(name, ggml_type, shape, n_elements, n_bytes, offset)
    return GGUFHeader(path, version, metadata, value_types, tensors, alignment, data_offset, cur.size)


def open_mmap(path: str | os.PathLike[str]) -> mmap.mmap:
    """Map a file copy-on-write (a writable buffer for torch, never written back to disk)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise GGUFFormatError(path, "file is empty")
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)


def close_quietly(mm: mmap.mmap) -> None:
    """Close a map unless views of it are still alive (say, in a traceback); it closes when they die."""
    with contextlib.suppress(BufferError):
        mm.close()


def read_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """Parse the header of the GGUF file at ``path``."""
    path = os.fspath(path)
    mm = open_mmap(path)
    try:
        return parse_header(memoryview(mm), path)
    finally:
        close_quietly(mm)


def inspect_gguf(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summarize a GGUF file without reading tensor data.

    Returns ``version``, ``n_tensors``, ``metadata`` (key -> python value; numeric arrays as numpy
    arrays, string arrays as lists), ``tensors`` (a list of dicts: name, type, shape in PyTorch order,
    n_elements, bytes, offset), ``file_size``, ``alignment`` and ``data_offset``.
    """
    header = read_header(path)
    return {
        "path": header.path,
        "version": header.version,
        "n_tensors": len(header.tensors),
        "metadata": header.metadata,
        "tensors": [
            {
                "name": t.name,
                "type": t.type.name,
                "shape": t.shape,
                "n_elements": t.n_elements,
                "bytes": t.n_bytes,
                "offset": t.offset,
            }
            for t in header.tensors.values()
        ],
        "file_size": header.file_size,
        "alignment": header.alignment,
        "data_offset": header.data_offset,
    }
