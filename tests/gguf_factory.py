"""Small real GGUF files written with gguf-py's GGUFWriter, for tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, GGUFWriter, quants

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


@dataclass(frozen=True)
class TinyModel:
    """A random-weight model of one architecture, small enough to build in milliseconds."""

    arch: str
    n_layers: int = 2
    dim: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 16
    ffn_dim: int = 96
    vocab_size: int = 320
    qkv_bias: bool = False
    qk_norm: bool = False
    sandwich_norms: bool = False
    tied: bool = True
    sliding_window: int = 0
    rope_freqs: float | None = None  # write a rope_freqs tensor filled with this factor
    rope_scale: float | None = None  # write linear RoPE scaling metadata with this factor


TINY_MODELS = {
    "llama": TinyModel("llama"),
    "llama-untied": TinyModel("llama", tied=False, n_kv_heads=4),
    "qwen2": TinyModel("qwen2", qkv_bias=True, tied=False),
    # transformers reads no head_dim for qwen3 GGUF files and assumes 128, as every real Qwen3 has
    "qwen3": TinyModel("qwen3", qk_norm=True, n_heads=2, n_kv_heads=1, head_dim=128),
    # transformers scales gemma3 queries by its default query_pre_attn_scalar, 256 = head_dim of the real ones
    "gemma3": TinyModel(
        "gemma3", n_layers=7, n_heads=2, n_kv_heads=1, head_dim=256, qk_norm=True, sandwich_norms=True, sliding_window=5
    ),
}


def byte_chars() -> list[str]:
    """GPT-2's printable stand-in for each byte, indexed by byte value."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def tiny_tokenizer(vocab_size: int) -> dict[str, tuple[object, GGUFValueType, GGUFValueType | None]]:
    """Tokenizer metadata for tiny models: byte-level BPE over the 256 bytes (any text encodes, about one
    token per byte) with one merge (" t"), then BOS and EOS, then unused tokens up to ``vocab_size``."""
    tokens = [*byte_chars(), "Ġt", "<s>", "</s>", *(f"<unused{i}>" for i in range(vocab_size - 259))]
    types = [1] * 257 + [3, 3] + [5] * (vocab_size - 259)
    array, string = GGUFValueType.ARRAY, GGUFValueType.STRING
    return {
        "tokenizer.ggml.model": ("gpt2", string, None),
        "tokenizer.ggml.pre": ("gpt-2", string, None),
        "tokenizer.ggml.tokens": (tokens, array, string),
        "tokenizer.ggml.token_type": (types, array, GGUFValueType.INT32),
        "tokenizer.ggml.merges": (["Ġ t"], array, string),
        "tokenizer.ggml.bos_token_id": (257, GGUFValueType.UINT32, None),
        "tokenizer.ggml.eos_token_id": (258, GGUFValueType.UINT32, None),
    }


# Matrices cycle through these types, so every tiny model also exercises several kernels.
WEIGHT_TYPES = (T.F32, T.Q8_0, T.F16, T.Q5_1, T.Q4_0)


def _weights(name: str, shape: tuple[int, ...], rng: np.random.Generator, index: int) -> tuple[T, np.ndarray]:
    if name.endswith("norm.weight"):
        return T.F32, (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    values = (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
    if len(shape) == 1:
        return T.F32, values
    ggml_type = WEIGHT_TYPES[index % len(WEIGHT_TYPES)]
    if ggml_type == T.F32:
        return T.F32, values
    return ggml_type, quants.quantize(values, ggml_type)


def write_tiny_model(path: Path, spec: TinyModel, seed: int = 0) -> Path:
    """Write a complete random-weight GGUF model of ``spec``'s architecture, loadable by transformers too."""
    rng = np.random.default_rng(seed)
    a, s = spec.arch, spec
    u32, f32 = GGUFValueType.UINT32, GGUFValueType.FLOAT32
    metadata: dict[str, tuple[object, GGUFValueType, GGUFValueType | None]] = {
        f"{a}.block_count": (s.n_layers, u32, None),
        f"{a}.context_length": (4096, u32, None),
        f"{a}.embedding_length": (s.dim, u32, None),
        f"{a}.feed_forward_length": (s.ffn_dim, u32, None),
        f"{a}.attention.head_count": (s.n_heads, u32, None),
        f"{a}.attention.head_count_kv": (s.n_kv_heads, u32, None),
        f"{a}.attention.key_length": (s.head_dim, u32, None),
        f"{a}.attention.value_length": (s.head_dim, u32, None),
        f"{a}.attention.layer_norm_rms_epsilon": (1e-6, f32, None),
        f"{a}.rope.freq_base": (10000.0 if a != "gemma3" else 1e6, f32, None),
        f"{a}.rope.dimension_count": (s.head_dim, u32, None),
        f"{a}.vocab_size": (s.vocab_size, u32, None),
        **tiny_tokenizer(s.vocab_size),
    }
    if s.sliding_window:
        metadata[f"{a}.attention.sliding_window"] = (s.sliding_window, u32, None)
    if s.rope_scale:
        metadata[f"{a}.rope.scaling.type"] = ("linear", GGUFValueType.STRING, None)
        metadata[f"{a}.rope.scaling.factor"] = (s.rope_scale, f32, None)

    shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (s.vocab_size, s.dim)}
    q_dim, kv_dim = s.n_heads * s.head_dim, s.n_kv_heads * s.head_dim
    for i in range(s.n_layers):
        layer = {
            "attn_norm.weight": (s.dim,),
            "attn_q.weight": (q_dim, s.dim),
            "attn_k.weight": (kv_dim, s.dim),
            "attn_v.weight": (kv_dim, s.dim),
            "attn_output.weight": (s.dim, q_dim),
            "ffn_norm.weight": (s.dim,),
            "ffn_gate.weight": (s.ffn_dim, s.dim),
            "ffn_up.weight": (s.ffn_dim, s.dim),
            "ffn_down.weight": (s.dim, s.ffn_dim),
        }
        if s.qkv_bias:
            layer |= {"attn_q.bias": (q_dim,), "attn_k.bias": (kv_dim,), "attn_v.bias": (kv_dim,)}
        if s.qk_norm:
            layer |= {"attn_q_norm.weight": (s.head_dim,), "attn_k_norm.weight": (s.head_dim,)}
        if s.sandwich_norms:
            layer |= {"post_attention_norm.weight": (s.dim,), "post_ffw_norm.weight": (s.dim,)}
        shapes |= {f"blk.{i}.{name}": shape for name, shape in layer.items()}
    shapes["output_norm.weight"] = (s.dim,)
    if not s.tied:
        shapes["output.weight"] = (s.vocab_size, s.dim)
    tensors = {name: _weights(name, shape, rng, i) for i, (name, shape) in enumerate(shapes.items())}
    if s.rope_freqs:
        tensors["rope_freqs.weight"] = (T.F32, np.full(s.head_dim // 2, s.rope_freqs, dtype=np.float32))
    return write_gguf(path, tensors, metadata, arch=a)
