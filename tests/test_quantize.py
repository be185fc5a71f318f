"""Quantization kernels: byte-exact against gguf-py's quantize, round trips, and clear errors."""

from __future__ import annotations

import platform

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, quants
from gguf import GGMLQuantizationType as T
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from phfe.inference.dequant import dequantize
from phfe.inference.quantize import CPU_CHUNK_ELEMENTS, UnsupportedQuantizationError, quantize

TYPES = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]
FLT_MAX = float(np.finfo(np.float32).max)
LEVELS = {T.Q8_0: 127, T.Q4_0: 8, T.Q5_0: 16, T.Q4_1: 15, T.Q5_1: 31}  # block max over scale

# gguf-py casts out-of-range and non-finite quants (and NaN float16 bits) the way numpy does on x86.
x86_only = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"),
    reason="gguf-py's result relies on numpy's x86 float-to-integer casts",
)


def reference(x: np.ndarray, ggml_type: T) -> np.ndarray:
    with np.errstate(all="ignore"):
        out = quants.quantize(x, ggml_type)
    return np.ascontiguousarray(out).view(np.uint8).reshape(*x.shape[:-1], -1)


def comparable(x: np.ndarray, ggml_type: T) -> np.ndarray:
    """For Q4_1/Q5_1, -0.0 made +0.0: numpy's min/max pick among tied zeros by SIMD lane order."""
    return x + np.float32(0) if ggml_type in (T.Q4_1, T.Q5_1) else x


def assert_matches_gguf_py(x: np.ndarray, ggml_type: T) -> None:
    ours = quantize(torch.from_numpy(x), ggml_type)
    ref = reference(x, ggml_type)
    assert ours.dtype == torch.uint8 and tuple(ours.shape) == ref.shape
    bad = np.flatnonzero(ours.numpy() != ref)
    block_bytes = GGML_QUANT_SIZES[ggml_type][1]
    assert bad.size == 0, f"{bad.size} bytes differ, first in block {bad[0] // block_bytes}"


def blocks(*rows: list[float]) -> np.ndarray:
    """One 32-element block per row, each row's values repeated to fill it."""
    return np.stack([np.resize(np.array(row, dtype=np.float32), 32) for row in rows])


RNG = np.random.default_rng(0)
NORMAL = RNG.standard_normal(32 * 8).astype(np.float32)
SPECIAL = {
    "max tie, positive first": blocks([0.5, 3.0, -1.0, -3.0]),
    "max tie, negative first": blocks([0.5, -3.0, 1.0, 3.0]),
    "max tie, all magnitudes": blocks([2.0, -2.0], [-2.0, 2.0]),
    "signed zeros": blocks([0.0], [-0.0], [0.0, -0.0], [-0.0, 0.0], [-0.0, 0.0, 0.0, 1.0]),
    "constant": blocks([0.7], [-1.3], [1.0], [65504.0]),
    "float16 subnormal scales": blocks(NORMAL[:32] * 1e-6, NORMAL[32:64] * 3e-7, [6e-8, -2e-8]),
    "scales below float16": blocks(NORMAL[:32] * 1e-9, [1e-12, -3e-12]),
    "beyond float16": blocks(NORMAL[:32] * 1e6, [7e4, -1.0], [65520.0, 3.0], [0.0, 1e6], [-7e4, 7e4]),
    "float16 rounding ties": blocks([1 + 2**-11, 1 + 3 * 2**-11, -(1 + 2**-11), 2**-24 * 1.5, 65519.0]),
    "bfloat16 rounding ties": blocks([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 3.4e38, 1e-40]),
}
PATHOLOGICAL = {  # gguf-py's bytes here depend on numpy's x86 casts of inf, NaN and huge quants
    "infinities": blocks([np.inf, 1.0], [-np.inf, 1.0], [np.inf, -np.inf], [np.inf, 0.0, -np.inf, 2.0]),
    "nan": blocks([np.nan, 1.0], [1.0, -2.0, np.nan], [np.nan], [np.nan, np.inf]),
    "subnormal float32 values": blocks(NORMAL[:32] * 1e-40, [1e-45, -1e-45, 0.0], [1e-42, 3.0e-39]),
    "subnormal float32 scales": blocks(NORMAL[:32] * 5e-38, NORMAL[32:64] * 1e-37),
    "range overflows float32": blocks([3e38, -3e38, 1.0], [FLT_MAX, -FLT_MAX], [FLT_MAX, 0.0]),
}


@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("shape", [(32,), (64, 256), (3, 5, 64)], ids=str)
def test_random_normal_matches_gguf_py(ggml_type: T, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    before = x.copy()
    assert_matches_gguf_py(x, ggml_type)
    np.testing.assert_array_equal(x, before)  # the input is left alone


@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("case", list(SPECIAL))
def test_special_blocks_match_gguf_py(ggml_type: T, case: str) -> None:
    assert_matches_gguf_py(comparable(SPECIAL[case], ggml_type), ggml_type)


@x86_only
@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("case", list(PATHOLOGICAL))
def test_non_finite_and_extreme_blocks_match_gguf_py(ggml_type: T, case: str) -> None:
    assert_matches_gguf_py(PATHOLOGICAL[case], ggml_type)


@x86_only
@pytest.mark.parametrize("ggml_type", [T.F32, T.F16, T.BF16], ids=lambda t: t.name)
def test_float_types_match_gguf_py_on_every_kind_of_bit_pattern(ggml_type: T) -> None:
    bits = np.random.default_rng(1).integers(0, 2**32, size=(64, 1024), dtype=np.uint32)
    bits[0, :8] = [0x7F800001, 0xFF800001, 0x7FC00000, 0xFFC00000, 0x7FFFFFFF, 0x7F802000, 1, 0x80000001]
    assert_matches_gguf_py(bits.view(np.float32), ggml_type)


@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
def test_shapes_spanning_many_cpu_chunks(ggml_type: T) -> None:
    rows = CPU_CHUNK_ELEMENTS * 5 // 2 // 256 + 1  # a ragged last chunk
    x = np.random.default_rng(2).standard_normal((rows, 256)).astype(np.float32)
    # a subnormal scale 2**-127 whose inverse is finite: only the last chunk takes the exact-cast path
    x[-1, :32] = np.linspace(0, 1, 32, dtype=np.float32) * np.float32(2**-127 * LEVELS.get(ggml_type, 1))
    assert_matches_gguf_py(x, ggml_type)


@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_input_is_widened_first(ggml_type: T, dtype: torch.dtype) -> None:
    values = torch.from_numpy(np.random.default_rng(3).standard_normal((8, 128)).astype(np.float32)).to(dtype)
    ours = quantize(values, ggml_type)
    np.testing.assert_array_equal(ours.numpy(), reference(values.float().numpy(), ggml_type))


def test_non_contiguous_input() -> None:
    values = torch.from_numpy(np.random.default_rng(4).standard_normal((64, 96)).astype(np.float32)).t()
    ours = quantize(values, T.Q4_0)
    np.testing.assert_array_equal(ours.numpy(), reference(np.ascontiguousarray(values.numpy()), T.Q4_0))


def _rows_of_blocks(elements: st.SearchStrategy[float]) -> st.SearchStrategy[np.ndarray]:
    shapes = st.tuples(st.integers(1, 3), st.integers(1, 3).map(lambda n: 32 * n))
    return shapes.flatmap(lambda shape: arrays(np.float32, shape, elements=elements))


# tiny magnitudes flushed to zero: every scale is then 0 or normal and the quants stay in range
ORDINARY_FLOATS = st.floats(-(2.0**100), 2.0**100, width=32).map(lambda v: v if abs(v) >= 2.0**-64 else 0.0)


@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
@given(x=_rows_of_blocks(ORDINARY_FLOATS))
@settings(max_examples=50, deadline=None)
def test_random_arrays_match_gguf_py(ggml_type: T, x: np.ndarray) -> None:
    assert_matches_gguf_py(comparable(x, ggml_type), ggml_type)


@x86_only
@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
@given(x=_rows_of_blocks(st.floats(-FLT_MAX, FLT_MAX, width=32)))
@settings(max_examples=50, deadline=None)
def test_arbitrary_finite_arrays_match_gguf_py(ggml_type: T, x: np.ndarray) -> None:
    assert_matches_gguf_py(comparable(x, ggml_type), ggml_type)


@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
def test_round_trip_through_dequantize_matches_gguf_py(ggml_type: T) -> None:
    x = np.concatenate([RNG.standard_normal((4, 256)).astype(np.float32).reshape(-1, 32)] + list(SPECIAL.values()))
    x = comparable(x, ggml_type)
    ours = dequantize(quantize(torch.from_numpy(x), ggml_type).view(-1), ggml_type, x.shape)
    with np.errstate(all="ignore"):
        ref = quants.dequantize(quants.quantize(x, ggml_type), ggml_type).reshape(x.shape)
    np.testing.assert_array_equal(ours.numpy().view(np.uint32), ref.astype(np.float32).view(np.uint32))


def test_unsupported_type_names_type_tensor_and_supported_types() -> None:
    values = torch.zeros(2, 256)
    with pytest.raises(NotImplementedError):  # gguf-py cannot quantize it either
        quants.quantize(values.numpy(), T.Q4_K)
    with pytest.raises(UnsupportedQuantizationError, match=r"'blk\.0\.ffn_up\.weight'.*Q4_K.*Q8_0") as info:
        quantize(values, T.Q4_K, name="blk.0.ffn_up.weight")
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnsupportedQuantizationError, match="IQ2_XXS"):
        quantize(values, T.IQ2_XXS)


@pytest.mark.parametrize("shape", [(4, 33), (16,), ()], ids=str)
def test_rows_not_a_multiple_of_the_block_size(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=rf"'w'.*{shape}.*Q4_0.*block size 32"):
        quantize(torch.zeros(shape), T.Q4_0, name="w")


def test_other_dtypes_are_rejected() -> None:
    with pytest.raises(TypeError, match="float64"):
        quantize(torch.zeros(2, 32, dtype=torch.float64), T.Q8_0)
