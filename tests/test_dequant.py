"""Dequantization kernels: bit-exact against gguf-py on random blocks, odd shapes and real models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGUFReader, quants
from hypothesis import given, settings
from hypothesis import strategies as st

from phfe.inference import SUPPORTED_TYPES, UnsupportedTensorTypeError, tensor_loading_context
from phfe.inference.dequant import CPU_CHUNK_ELEMENTS, FORMATS, dequantize
from tests.gguf_factory import T, random_tensor_bytes, write_gguf

TYPES = list(FORMATS)


def reference(raw: np.ndarray, ggml_type: T, shape: tuple[int, ...]) -> np.ndarray:
    return quants.dequantize(raw, ggml_type).reshape(shape)


def assert_bit_exact(ours: torch.Tensor, ref: np.ndarray) -> None:
    assert ours.dtype == torch.float32 and tuple(ours.shape) == ref.shape
    mismatches = np.flatnonzero(ours.numpy().view(np.uint32) != ref.astype(np.float32).view(np.uint32))
    assert mismatches.size == 0, f"{mismatches.size} elements differ, the first at flat index {mismatches[0]}"


def test_every_required_type_has_a_kernel() -> None:
    required = [
        "F32",
        "F16",
        "BF16",
        "Q4_0",
        "Q4_1",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "IQ4_NL",
    ]
    assert sorted(SUPPORTED_TYPES) == sorted(required)


@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
@given(data=st.data())
@settings(max_examples=25, deadline=None)
def test_random_blocks_match_gguf_py(ggml_type: T, data: st.DataObject) -> None:
    block_elems, _ = GGML_QUANT_SIZES[ggml_type]
    rows = data.draw(st.integers(1, 6), label="rows")
    blocks_per_row = data.draw(st.integers(1, 4 if block_elems > 1 else 64), label="blocks per row")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    shape = (rows, blocks_per_row * block_elems)
    raw = random_tensor_bytes(ggml_type, shape, np.random.default_rng(seed))
    ours = dequantize(torch.from_numpy(raw.reshape(-1)), ggml_type, shape)
    assert_bit_exact(ours, reference(raw, ggml_type, shape))


@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
def test_shapes_spanning_many_cpu_chunks(ggml_type: T) -> None:
    block_elems, _ = GGML_QUANT_SIZES[ggml_type]
    row = max(block_elems, 256)
    shape = (2, 3, (CPU_CHUNK_ELEMENTS * 5 // 2) // 6 // row * row + block_elems)  # a ragged last chunk
    raw = random_tensor_bytes(ggml_type, shape, np.random.default_rng(7))
    ours = dequantize(torch.from_numpy(raw.reshape(-1)), ggml_type, shape)
    assert_bit_exact(ours, reference(raw, ggml_type, shape))


@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_other_output_dtypes_round_the_float32_result(ggml_type: T, dtype: torch.dtype) -> None:
    shape = (3, 512)
    raw = torch.from_numpy(random_tensor_bytes(ggml_type, shape, np.random.default_rng(3)).reshape(-1))
    exact = dequantize(raw, ggml_type, shape)
    ours = dequantize(raw, ggml_type, shape, dtype)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, exact.to(dtype), rtol=0, atol=0, equal_nan=True)


def test_f16_keeps_signalling_nan_payloads() -> None:
    raw = np.array([0x7C01, 0xFD43, 0x7E00, 0x3C00], dtype=np.uint16).view(np.uint8)
    ours = dequantize(torch.from_numpy(raw.copy()), T.F16, (4,))
    assert_bit_exact(ours, reference(raw, T.F16, (4,)))


def test_unsupported_type_names_the_tensor_and_type(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).integers(0, 256, (2, GGML_QUANT_SIZES[T.IQ2_XXS][1]), dtype=np.uint8)
    path = write_gguf(tmp_path / "iq2.gguf", {"blk.0.attn_q.weight": (T.IQ2_XXS, raw)})
    with tensor_loading_context(path) as loader:
        assert loader.tensors["blk.0.attn_q.weight"].shape == (2, 256)
        with pytest.raises(UnsupportedTensorTypeError, match=r"'blk\.0\.attn_q\.weight'.*IQ2_XXS") as err:
            loader.read_tensor("blk.0.attn_q.weight")
    assert str(path) in str(err.value) and "Q4_K" in str(err.value)


@pytest.mark.real_model
def test_every_tensor_of_the_real_models_is_bit_exact(real_model_path: Path) -> None:
    reader = GGUFReader(real_model_path)
    with tensor_loading_context(real_model_path) as loader:
        for tensor in reader.tensors:
            ours = loader.read_tensor(tensor.name)
            assert_bit_exact(ours, quants.dequantize(tensor.data, tensor.tensor_type).reshape(ours.shape))
