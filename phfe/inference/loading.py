"""Tensor access over a memory-mapped GGUF file: one tensor at a time, or streamed in bounded batches."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch

from phfe.inference.dequant import FORMATS, SUPPORTED_TYPES, dequantize
from phfe.inference.errors import TensorNotFoundError, UnsupportedTensorTypeError
from phfe.inference.gguf_file import GGUFHeader, TensorInfo, close_quietly, open_mmap, parse_header


class TensorLoader:
    """Reads and dequantizes tensors of one GGUF file; use through :func:`tensor_loading_context`."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._mmap = open_mmap(self.path)
        try:
            self.header: GGUFHeader = parse_header(memoryview(self._mmap), self.path)
        except BaseException:
            close_quietly(self._mmap)
            raise
        self._bytes = torch.frombuffer(self._mmap, dtype=torch.uint8)

    @property
    def tensors(self) -> dict[str, TensorInfo]:
        return self.header.tensors

    @property
    def metadata(self) -> dict:
        return self.header.metadata

    def info(self, name: str) -> TensorInfo:
        try:
            return self.header.tensors[name]
        except KeyError:
            raise TensorNotFoundError(self.path, name) from None

    def read_raw(self, name: str) -> torch.Tensor:
        """The tensor's bytes as a 1-D uint8 view of the map (valid while the file is open)."""
        info = self.info(name)
        return self._bytes[info.offset : info.offset + info.n_bytes]

    def read_tensor(
        self, name: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Dequantize tensor ``name`` into a new ``dtype`` tensor in PyTorch layout on ``device``.

        The quantized bytes move to ``device`` first, so on a GPU the dequantization runs there.
        """
        info = self.info(name)
        if info.type not in FORMATS:
            raise UnsupportedTensorTypeError(self.path, name, info.type.name, list(SUPPORTED_TYPES))
        raw = self.read_raw(name)
        if torch.device(device).type != "cpu":
            raw = raw.to(device, non_blocking=False)
        return dequantize(raw, info.type, info.shape, dtype)

    def release(self, name: str) -> None:
        """Drop the map's pages of a tensor already read, so that loading a whole model peaks at the weights,
        not the weights plus the file (the pages stay in the page cache and come back if read again)."""
        info = self.info(name)
        start = info.offset - info.offset % mmap.PAGESIZE
        self._mmap.madvise(mmap.MADV_DONTNEED, start, info.offset + info.n_bytes - start)

    def close(self) -> None:
        self._bytes = None
        close_quietly(self._mmap)

    @property
    def closed(self) -> bool:
        return self._mmap.closed


@contextmanager
def tensor_loading_context(path: str | os.PathLike[str]) -> Iterator[TensorLoader]:
    """Open a GGUF file for reading tensors; the file is closed on exit."""
    loader = TensorLoader(path)
    try:
        yield loader
    finally:
        loader.close()


class StreamingDequantizer:
    """Yields ``{name: tensor}`` batches of at most ``batch_size`` tensors, in file order."""

    def __init__(
        self,
        loader: TensorLoader,
        batch_size: int = 8,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        names: Iterable[str] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.loader = loader
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.names = list(loader.tensors if names is None else names)

    def __len__(self) -> int:
        return -(-len(self.names) // self.batch_size)

    def iter_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, len(self.names), self.batch_size):
            names = self.names[start : start + self.batch_size]
            batch = {name: self.loader.read_tensor(name, self.device, self.dtype) for name in names}
            for name in names:
                self.loader.release(name)
            yield batch


@contextmanager
def streaming_dequant_context(
    path: str | os.PathLike[str],
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    names: Iterable[str] | None = None,
) -> Iterator[StreamingDequantizer]:
    """Stream every tensor (or ``names``) of a GGUF file in batches; memory is bounded by one batch."""
    with tensor_loading_context(path) as loader:
        yield StreamingDequantizer(loader, batch_size, device, dtype, names)
