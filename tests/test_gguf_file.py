"""The GGUF header parser: parity with gguf-py, and a clear GGUFError for every kind of corrupt file."""

from __future__ import annotations

import contextlib
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType

from phfe.inference import GGUFError, GGUFFormatError, inspect_gguf
from phfe.inference.gguf_file import parse_header, read_header
from tests.gguf_factory import ALL_VALUE_TYPES


def assert_matches_gguf_py(path: Path) -> None:
    ours = read_header(path)
    ref = GGUFReader(path)
    fields = {key: field for key, field in ref.fields.items() if not key.startswith("GGUF.")}
    assert list(ours.metadata) == list(fields)
    for key, field in fields.items():
        value = ours.metadata[key]
        assert (value.tolist() if isinstance(value, np.ndarray) else value) == field.contents(), key
        assert ours.value_types[key].kind == field.types[0], key
        if field.types[0] == GGUFValueType.ARRAY:
            assert ours.value_types[key].item == field.types[-1], key
    assert [t.name for t in ref.tensors] == list(ours.tensors)
    for tensor in ref.tensors:
        info = ours.tensors[tensor.name]
        assert info.type == tensor.tensor_type
        assert info.shape == tuple(int(d) for d in reversed(tensor.shape))
        assert (info.n_elements, info.n_bytes, info.offset) == (tensor.n_elements, tensor.n_bytes, tensor.data_offset)
    assert ours.data_offset == ref.data_offset
    assert ours.alignment == ref.alignment


def test_matches_gguf_py_on_every_value_and_tensor_type(all_types_gguf: Path) -> None:
    assert_matches_gguf_py(all_types_gguf)
    metadata = read_header(all_types_gguf).metadata
    for key, (value, _, _) in ALL_VALUE_TYPES.items():
        got = metadata[key]
        if isinstance(got, np.ndarray):
            got = got.tolist()
        assert got == (value if isinstance(value, (str, bool)) or "string" in key else pytest.approx(value)), key


@pytest.mark.real_model
def test_matches_gguf_py_on_real_models(real_model_path: Path) -> None:
    assert_matches_gguf_py(real_model_path)


@pytest.mark.real_model
def test_inspect_gemma3_is_fast_and_complete(gemma3_path: Path) -> None:
    started = time.perf_counter()
    summary = inspect_gguf(gemma3_path)
    elapsed = time.perf_counter() - started
    assert summary["metadata"]["general.architecture"] == "gemma3"
    assert len(summary["metadata"]["tokenizer.ggml.tokens"]) == 262144
    assert isinstance(summary["metadata"]["tokenizer.ggml.scores"], np.ndarray)
    assert summary["n_tensors"] == len(summary["tensors"]) == 236
    assert summary["file_size"] == gemma3_path.stat().st_size
    embed = next(t for t in summary["tensors"] if t["name"] == "token_embd.weight")
    assert embed["shape"] == (262144, 640)
    # A sanity bound, not a benchmark (experiments/bench_gguf_io.py measures): GGUFReader takes ~8 s.
    assert elapsed < 5


# --- corrupt files ------------------------------------------------------------------------------


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def build_gguf(
    kvs: list[bytes] | None = None,
    tensors: list[bytes] | None = None,
    data: bytes = b"\0" * 128,
    version: int = 3,
    n_kv: int | None = None,
    n_tensors: int | None = None,
    magic: bytes = b"GGUF",
    alignment: int = 32,
) -> bytes:
    """Raw GGUF bytes from pre-packed entries, so each test can break exactly one thing."""
    kvs = [kv_u32("general.alignment", alignment)] if kvs is None else kvs
    tensors = [tensor_entry("w", [32], 0, 0)] if tensors is None else tensors
    head = magic + struct.pack(
        "<IQQ", version, len(tensors) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv
    )
    body = head + b"".join(kvs) + b"".join(tensors)
    return body + b"\0" * (-len(body) % alignment) + data


def kv_u32(key: str, value: int) -> bytes:
    return _string(key) + struct.pack("<II", GGUFValueType.UINT32, value)


def tensor_entry(name: str | bytes, dims: list[int], type_id: int, offset: int) -> bytes:
    return _string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, type_id, offset)


def test_well_formed_builder_parses() -> None:
    header = parse_header(build_gguf(), "ok.gguf")
    assert header.tensors["w"].shape == (32,)


CORRUPTIONS = {
    "bad magic": (build_gguf(magic=b"GGML"), "not a GGUF file"),
    "version 1": (build_gguf(version=1), "unsupported GGUF version 1"),
    "version 4": (build_gguf(version=4), "unsupported GGUF version 4"),
    "big-endian": (build_gguf(version=3 << 24), "big-endian"),
    "huge metadata count": (build_gguf(n_kv=2**62), "cannot fit"),
    "huge tensor count": (build_gguf(n_tensors=2**40), "cannot fit"),
    "metadata count beyond entries": (build_gguf(n_kv=3), "."),
    "huge key length": (build_gguf(kvs=[struct.pack("<Q", 2**63) + b"x"]), "truncated"),
    "unknown value type": (build_gguf(kvs=[_string("k") + struct.pack("<I", 99)]), "unknown value type 99"),
    "huge array": (build_gguf(kvs=[_string("k") + struct.pack("<IIQ", 9, 4, 2**61)]), "truncated"),
    "huge string array": (build_gguf(kvs=[_string("k") + struct.pack("<IIQ", 9, 8, 2**60)]), "truncated"),
    "deeply nested arrays": (build_gguf(kvs=[_string("k") + struct.pack("<IIQ", 9, 9, 1) * 40]), "nested"),
    "invalid utf-8 key": (build_gguf(kvs=[_string(b"\xff\xfe")]), "not valid UTF-8"),
    "duplicate key": (build_gguf(kvs=[kv_u32("a", 1), kv_u32("a", 2)]), "duplicate metadata key"),
    "alignment not a power of two": (build_gguf(kvs=[kv_u32("general.alignment", 48)]), "power-of-two"),
    "alignment zero": (build_gguf(kvs=[kv_u32("general.alignment", 0)]), "power-of-two"),
    "zero dimensions": (build_gguf(tensors=[tensor_entry("w", [], 0, 0)]), "0 dimensions"),
    "five dimensions": (build_gguf(tensors=[tensor_entry("w", [1] * 5, 0, 0)]), "5 dimensions"),
    "unknown tensor type": (build_gguf(tensors=[tensor_entry("w", [32], 77, 0)]), "unknown ggml type id 77"),
    "row not a block multiple": (build_gguf(tensors=[tensor_entry("w", [33], 2, 0)]), "not a multiple"),
    "misaligned offset": (build_gguf(tensors=[tensor_entry("w", [4], 0, 4)]), "not aligned"),
    "data past the end": (build_gguf(tensors=[tensor_entry("w", [4096], 0, 0)]), "past the end"),
    "huge dimensions": (build_gguf(tensors=[tensor_entry("w", [2**40, 2**40], 0, 0)]), "past the end"),
    "duplicate tensor": (build_gguf(tensors=[tensor_entry("w", [8], 0, 0)] * 2), "duplicate tensor"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_header_is_a_clear_error(case: str, tmp_path: Path) -> None:
    raw, message = CORRUPTIONS[case]
    path = tmp_path / "broken.gguf"
    path.write_bytes(raw)
    with pytest.raises(GGUFFormatError, match=message) as excinfo:
        read_header(path)
    assert str(path) in str(excinfo.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.touch()
    with pytest.raises(GGUFFormatError, match="empty"):
        inspect_gguf(path)


def _header_bytes(path: Path, limit: int | None = None) -> bytes:
    header = read_header(path)
    with open(path, "rb") as f:
        return f.read(min(header.file_size, limit or header.file_size))


def test_truncated_at_every_byte_is_a_gguf_error(all_types_gguf: Path) -> None:
    raw = all_types_gguf.read_bytes()
    data_end = max(t.offset + t.n_bytes for t in read_header(all_types_gguf).tensors.values())
    assert data_end > len(raw) - 32  # only alignment padding follows the last tensor
    for size in range(data_end):
        with pytest.raises(GGUFError):
            parse_header(raw[:size], "truncated.gguf")


def _assert_parses_or_gguf_error(raw: bytes) -> None:
    with contextlib.suppress(GGUFError):
        parse_header(raw, "mutated.gguf")


def test_random_header_mutations_never_escape_as_other_errors(all_types_gguf: Path) -> None:
    raw = bytearray(all_types_gguf.read_bytes())
    header_end = read_header(all_types_gguf).data_offset
    rng = np.random.default_rng(1)
    for _ in range(3000):
        mutated = bytearray(raw)
        for position in rng.integers(0, header_end, rng.integers(1, 4)):
            mutated[position] = rng.integers(0, 256) if rng.random() < 0.7 else 0xFF
        _assert_parses_or_gguf_error(bytes(mutated))


@pytest.mark.real_model
def test_real_headers_truncated_and_mutated(real_model_path: Path) -> None:
    header = read_header(real_model_path)
    raw = _header_bytes(real_model_path, header.data_offset + 4096)
    rng = np.random.default_rng(2)
    for size in rng.integers(0, header.data_offset, 30):
        with pytest.raises(GGUFError):
            parse_header(raw[:size], "truncated.gguf")
    # Mutations near structure boundaries: the counts and first keys, and the tensor table.
    table_start = header.data_offset - 40 * len(header.tensors)
    for region, count in (((4, 200), 40), ((table_start, header.data_offset), 20)):
        for _ in range(count):
            mutated = bytearray(raw)
            for position in rng.integers(*region, rng.integers(1, 3)):
                mutated[position] = rng.integers(0, 256)
            _assert_parses_or_gguf_error(bytes(mutated))
