"""Tensor loading over a memory map: layout, dtype, device, streaming batches, closing the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFReader, quants

from phfe.inference import (
    TensorNotFoundError,
    inspect_gguf,
    streaming_dequant_context,
    tensor_loading_context,
)


def open_fds() -> set[str]:
    return {
        os.readlink(f"/proc/self/fd/{fd}")
        for fd in os.listdir("/proc/self/fd")
        if fd.isdigit() and os.path.exists(f"/proc/self/fd/{fd}")
    }


def open_maps(path: Path) -> int:
    with open("/proc/self/maps") as maps:
        return sum(str(path) in line for line in maps)


def test_read_tensor_in_pytorch_layout(all_types_gguf: Path) -> None:
    reader = GGUFReader(all_types_gguf)
    with tensor_loading_context(all_types_gguf) as loader:
        for tensor in reader.tensors:
            ours = loader.read_tensor(tensor.name)
            expected = quants.dequantize(tensor.data, tensor.tensor_type)
            assert tuple(ours.shape) == expected.shape  # gguf-py reshapes to (..., out, in) as well
            assert ours.is_contiguous()
    with tensor_loading_context(all_types_gguf) as loader:
        matrix = loader.read_tensor("q4_0.5x64")
    assert matrix.shape == (5, 64)  # ggml ne = [64, 5]: rows of 64, as nn.Linear stores (out, in)


def test_read_tensor_dtype_and_device(all_types_gguf: Path) -> None:
    with tensor_loading_context(all_types_gguf) as loader:
        exact = loader.read_tensor("q6_k.3x512")
        half = loader.read_tensor("q6_k.3x512", device=torch.device("cpu"), dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.equal(half, exact.bfloat16())


def test_results_outlive_the_file(all_types_gguf: Path) -> None:
    with tensor_loading_context(all_types_gguf) as loader:
        vector = loader.read_tensor("f32.vector")
        copy = vector.clone()
    assert loader.closed
    assert torch.equal(vector, copy)


def test_file_is_closed_on_exit_even_after_an_error(all_types_gguf: Path) -> None:
    fds_before, maps_before = open_fds(), open_maps(all_types_gguf)
    missing = pytest.raises(TensorNotFoundError, match="'missing.weight'")
    with missing as err, tensor_loading_context(all_types_gguf) as loader:
        assert open_maps(all_types_gguf) > maps_before
        loader.read_tensor("missing.weight")
    assert isinstance(err.value, KeyError) and str(all_types_gguf) in str(err.value)
    del err
    assert loader.closed
    assert open_maps(all_types_gguf) == maps_before
    assert open_fds() == fds_before


def test_streaming_yields_every_tensor_once_in_bounded_batches(all_types_gguf: Path) -> None:
    names = [t["name"] for t in inspect_gguf(all_types_gguf)["tensors"]]
    with tensor_loading_context(all_types_gguf) as loader:
        expected = {name: loader.read_tensor(name) for name in names}
    for batch_size in (1, 3, len(names), len(names) + 5):
        seen: list[str] = []
        with streaming_dequant_context(all_types_gguf, batch_size=batch_size) as stream:
            assert len(stream) == -(-len(names) // batch_size)
            for batch in stream.iter_batches():
                assert 1 <= len(batch) <= batch_size
                for name, tensor in batch.items():
                    assert torch.equal(tensor, expected[name])
                seen.extend(batch)
        assert seen == names


def test_streaming_a_subset_and_bad_batch_size(all_types_gguf: Path) -> None:
    with streaming_dequant_context(all_types_gguf, batch_size=2, names=["f32.vector"]) as stream:
        assert [list(b) for b in stream.iter_batches()] == [["f32.vector"]]
    with pytest.raises(ValueError, match="batch_size"), streaming_dequant_context(all_types_gguf, batch_size=0):
        pass


def anonymous_rss() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("RssAnon:"))
    return int(line.split()[1]) * 1024


@pytest.mark.real_model
def test_streaming_memory_is_bounded_by_a_batch(smollm2_path: Path) -> None:
    baseline = anonymous_rss()
    peak_growth = largest_batch = total = 0
    with streaming_dequant_context(smollm2_path, batch_size=2) as stream:
        for batch in stream.iter_batches():
            batch_bytes = sum(t.numel() * t.element_size() for t in batch.values())
            largest_batch, total = max(largest_batch, batch_bytes), total + batch_bytes
            peak_growth = max(peak_growth, anonymous_rss() - baseline)
            del batch
    slack = 32 << 20
    assert total > 2 * (largest_batch + slack)  # the bound below would catch a stream that keeps batches
    assert peak_growth <= largest_batch + slack


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_dequantizes_on_the_gpu(all_types_gguf: Path) -> None:
    with tensor_loading_context(all_types_gguf) as loader:
        for name in loader.tensors:
            on_gpu = loader.read_tensor(name, device="cuda")
            assert on_gpu.device.type == "cuda"
            on_cpu = loader.read_tensor(name)
            assert np.array_equal(on_gpu.cpu().numpy().view(np.uint32), on_cpu.numpy().view(np.uint32))


def mapped_rss(path: Path) -> int:
    """Resident bytes of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            if "-" in line.split(" ", 1)[0]:
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1]) * 1024
    return total


@pytest.mark.real_model
def test_released_tensors_leave_memory_and_read_back_identically(smollm2_path: Path) -> None:
    with tensor_loading_context(smollm2_path) as loader:
        first = {name: loader.read_tensor(name) for name in loader.tensors}
        touched = mapped_rss(smollm2_path)
        for name in loader.tensors:
            loader.release(name)
        assert mapped_rss(smollm2_path) < touched / 10
        assert all(torch.equal(loader.read_tensor(name), tensor) for name, tensor in first.items())
