"""Small real GGUF files written with gguf-py's GGUFWriter, for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, GGUFWriter

T = GGMLQuantizationType

# Byte offsets of the fp16 scales inside one block: random bytes there could be NaN or inf.
SCALE_OFFSETS: dict[T, tuple[int, ...]] = {
    T.Q4_0: (0,),
    T.Q4_1: (0, 2),
    T.Q5_0: (0,),
    T.Q5_1: (0, 2),
    T.Q8_0: (0,),
    T.IQ4_NL: (0,),
    T.Q2_K: (80, 82),
    T.Q3_K: (108,),
    T.Q4_K: (0, 2),
    T.Q5_K: (0, 2),
    T.Q6_K: (208,),
}

# One metadata value of every GGUF value type.
ALL_VALUE_TYPES: dict[str, tuple[object, GGUFValueType, GGUFValueType | None]] = {
    "test.u8": (200, GGUFValueType.UINT8, None),
    "test.i8": (-100, GGUFValueType.INT8, None),
    "test.u16": (60000, GGUFValueType.UINT16, None),
    "test.i16": (-30000, GGUFValueType.INT16, None),
    "test.u32": (4_000_000_000, GGUFValueType.UINT32, None),
    "test.i32": (-2_000_000_000, GGUFValueType.INT32, None),
    "test.f32": (0.1, GGUFValueType.FLOAT32, None),
    "test.bool": (True, GGUFValueType.BOOL, None),
    "test.string": ("héllo wörld ✓ 你好", GGUFValueType.STRING, None),
    "test.u64": (2**63 + 5, GGUFValueType.UINT64, None),
    "test.i64": (-(2**62), GGUFValueType.INT64, None),
    "test.f64": (1e-300, GGUFValueType.FLOAT64, None),
    "test.array.i32": ([1, -2, 3], GGUFValueType.ARRAY, GGUFValueType.INT32),
    "test.array.f32": ([0.5, -1.25, 3e38], GGUFValueType.ARRAY, GGUFValueType.FLOAT32),
    "test.array.u8": ([0, 255, 7], GGUFValueType.ARRAY, GGUFValueType.UINT8),
    "test.array.bool": ([True, False], GGUFValueType.ARRAY, GGUFValueType.BOOL),
    "test.array.string": (["a", "", "ü🙂", "<0x0A>"], GGUFValueType.ARRAY, GGUFValueType.STRING),
}


def random_blocks(ggml_type: T, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random bytes as ``n_blocks`` blocks of ``ggml_type``, with finite fp16 scales."""
    _, block_bytes = GGML_QUANT_SIZES[ggml_type]
    raw = rng.integers(0, 256, (n_blocks, block_bytes), dtype=np.uint8)
    for offset in SCALE_OFFSETS.get(ggml_type, ()):
        scales = (rng.standard_normal(n_blocks) * rng.choice([1e-3, 1.0, 100.0], n_blocks)).astype(np.float16)
        raw[:, offset : offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return raw


def random_tensor_bytes(ggml_type: T, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random bytes for a tensor of PyTorch ``shape``, laid out as gguf-py expects (rows of bytes)."""
    block_elems, block_bytes = GGML_QUANT_SIZES[ggml_type]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    raw = random_blocks(ggml_type, rows * shape[-1] // block_elems, rng)
    return raw.reshape(*shape[:-1], shape[-1] // block_elems * block_bytes)


def write_gguf(
    path: Path,
    tensors: dict[str, tuple[T, np.ndarray]],
    metadata: dict[str, tuple[object, GGUFValueType, GGUFValueType | None]] | None = None,
    arch: str = "llama",
    alignment: int | None = None,
) -> Path:
    """Write ``tensors`` (name -> (type, raw byte rows or float array)) and ``metadata`` to ``path``."""
    writer = GGUFWriter(path, arch)
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    for key, (value, vtype, sub_type) in (metadata or {}).items():
        writer.add_key_value(key, value, vtype, sub_type)
    for name, (ggml_type, data) in tensors.items():
        if ggml_type in (T.F32, T.F16) and data.dtype != np.uint8:
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, data, raw_dtype=ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_all_types_gguf(path: Path, seed: int = 0) -> Path:
    """A file holding one tensor of every type PHFE decodes (plus odd shapes) and every value type."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, tuple[T, np.ndarray]] = {
        "f32.vector": (T.F32, rng.standard_normal(7).astype(np.float32)),
        "f16.matrix": (T.F16, rng.standard_normal((3, 5)).astype(np.float16)),
        "bf16.matrix": (T.BF16, random_tensor_bytes(T.BF16, (4, 6), rng)),
    }
    shapes = {32: [(32,), (5, 64), (2, 3, 96)], 256: [(256,), (3, 512), (2, 2, 256)]}
    for ggml_type in SCALE_OFFSETS:
        for shape in shapes[GGML_QUANT_SIZES[ggml_type][0]]:
            name = f"{ggml_type.name.lower()}.{'x'.join(map(str, shape))}"
            tensors[name] = (ggml_type, random_tensor_bytes(ggml_type, shape, rng))
    return write_gguf(path, tensors, ALL_VALUE_TYPES)
