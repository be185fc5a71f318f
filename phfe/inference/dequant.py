"""Dequantization of ggml block formats in vectorized torch: one code path for CPU and CUDA.

Every kernel reproduces gguf-py's arithmetic operation by operation (the same products and sums in
float32, in the same order), so results are bit-exact against ``gguf.quants.dequantize``. On the CPU
the blocks are processed in chunks whose temporaries stay in cache, and the output is allocated from
huge pages; only the final float32 values travel to main memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from gguf import GGMLQuantizationType as T

QK_K = 256
IQ4_NL_VALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)
CPU_CHUNK_ELEMENTS = 1 << 17
DEVICE_CHUNK_ELEMENTS = 1 << 26

Kernel = Callable[[torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class BlockFormat:
    """A ggml type: elements and bytes per block, and the kernel writing blocks into float32 rows."""

    block_elems: int
    block_bytes: int
    kernel: Kernel


def _scale(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The fp16 scalar at byte ``start`` of every block, as float32 of shape (n_blocks, 1)."""
    return blocks[:, start : start + 2].contiguous().view(torch.float16).float()


def _bits(raw: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Split (..., n) bytes into (..., 8 // n_bits, n) fields of ``n_bits``, lowest bits first."""
    shifts = torch.arange(0, 8, n_bits, dtype=torch.uint8, device=raw.device).view(-1, 1)
    return (raw.unsqueeze(-2) >> shifts) & ((1 << n_bits) - 1)


def _nibbles_into(out: torch.Tensor, qs: torch.Tensor) -> None:
    """Write low nibbles then high nibbles of ``qs`` (n, m) into ``out`` viewed as (n, 2, m)."""
    out = out.view(qs.shape[0], 2, qs.shape[1])
    out[:, 0].copy_(qs & 15)
    out[:, 1].copy_(qs >> 4)


def _k_scales(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack Q4_K/Q5_K's 12 bytes into 8 six-bit scales and 8 six-bit mins, as float32."""
    d, m, md = raw.reshape(-1, 3, 4).unbind(1)
    scales = torch.cat([d & 63, (md & 15) | ((d >> 2) & 48)], 1)
    mins = torch.cat([m & 63, (md >> 4) | ((m >> 2) & 48)], 1)
    return scales.float(), mins.float()


def _q3_k_scales(raw: torch.Tensor) -> torch.Tensor:
    """Unpack Q3_K's 12 bytes into 16 signed six-bit scales, as float32."""
    low = _bits(raw[:, :8], 4).flatten(1)
    high = _bits(raw[:, 8:], 2).flatten(1)
    return ((low | (high << 4)).view(torch.int8) - 32).float()


def _float(out: torch.Tensor, raw: torch.Tensor, dtype: torch.dtype) -> None:
    out.copy_(raw.contiguous().view(dtype).view(out.shape))


def _f16(b: torch.Tensor, out: torch.Tensor) -> None:
    _float(out, b, torch.float16)
    nan = out.isnan()
    if nan.any():  # the hardware conversion quiets signalling NaNs; numpy keeps their bits
        bits = b.contiguous().view(torch.int16).view(out.shape).int() & 0xFFFF
        exact = ((bits & 0x8000) << 16) | 0x7F800000 | ((bits & 0x3FF) << 13)
        out.view(torch.int32)[nan] = exact[nan]


def _q4_0(b: torch.Tensor, out: torch.Tensor) -> None:
    _nibbles_into(out, b[:, 2:])
    out.sub_(8).mul_(_scale(b, 0))


def _q4_1(b: torch.Tensor, out: torch.Tensor) -> None:
    _nibbles_into(out, b[:, 4:])
    out.mul_(_scale(b, 0)).add_(_scale(b, 2))


def _five_bit(qh: torch.Tensor, qs: torch.Tensor) -> torch.Tensor:
    """Q5 quants: nibbles of ``qs`` with bit j of the little-endian ``qh`` word as their 5th bit."""
    low = torch.cat([qs & 15, qs >> 4], 1)
    return low | (_bits(qh, 1).transpose(1, 2).reshape(-1, 32) << 4)


def _q5_0(b: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(_five_bit(b[:, 2:6], b[:, 6:]))
    out.sub_(16).mul_(_scale(b, 0))


def _q5_1(b: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(_five_bit(b[:, 4:8], b[:, 8:]))
    out.mul_(_scale(b, 0)).add_(_scale(b, 2))


def _q8_0(b: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(b[:, 2:].view(torch.int8))
    out.mul_(_scale(b, 0))


def _iq4_nl(b: torch.Tensor, out: torch.Tensor) -> None:
    table = torch.tensor(IQ4_NL_VALUES, dtype=torch.float32, device=b.device)
    qs = b[:, 2:]
    out.copy_(table[torch.cat([qs & 15, qs >> 4], 1).int()])
    out.mul_(_scale(b, 0))


def _q2_k(b: torch.Tensor, out: torch.Tensor) -> None:
    n = b.shape[0]
    scales = b[:, :16]
    dl = (_scale(b, 80) * (scales & 15).float()).unsqueeze(-1)
    ml = (_scale(b, 82) * (scales >> 4).float()).unsqueeze(-1)
    groups = out.view(n, 16, 16)
    groups.copy_(_bits(b[:, 16:80].reshape(n, 2, 32), 2).view(n, 16, 16))
    groups.mul_(dl).sub_(ml)


def _q3_k(b: torch.Tensor, out: torch.Tensor) -> None:
    n = b.shape[0]
    dl = (_scale(b, 108) * _q3_k_scales(b[:, 96:108])).unsqueeze(-1)
    low = _bits(b[:, 32:96].reshape(n, 2, 32), 2).view(n, 256)
    high = _bits(b[:, :32], 1).view(n, 256)
    groups = out.view(n, 16, 16)
    groups.copy_((low | (high << 2)).view(torch.int8).view(n, 16, 16) - 4)
    groups.mul_(dl)


def _k_quant_4_5(b: torch.Tensor, out: torch.Tensor, qh: torch.Tensor | None) -> None:
    n = b.shape[0]
    scales, mins = _k_scales(b[:, 4:16])
    d = (_scale(b, 0) * scales).unsqueeze(-1)
    dm = (_scale(b, 2) * mins).unsqueeze(-1)
    qs = b[:, -128:].reshape(n, 4, 32)
    q = torch.stack([qs & 15, qs >> 4], 2).view(n, 8, 32)
    if qh is not None:
        q |= _bits(qh, 1) << 4
    groups = out.view(n, 8, 32)
    groups.copy_(q)
    groups.mul_(d).sub_(dm)


def _q4_k(b: torch.Tensor, out: torch.Tensor) -> None:
    _k_quant_4_5(b, out, None)


def _q5_k(b: torch.Tensor, out: torch.Tensor) -> None:
    _k_quant_4_5(b, out, b[:, 16:48])


def _q6_k(b: torch.Tensor, out: torch.Tensor) -> None:
    n = b.shape[0]
    d = (_scale(b, 208) * b[:, 192:208].view(torch.int8).float()).unsqueeze(-1)
    ql = b[:, :128].reshape(n, 2, 64)
    low = torch.stack([ql & 15, ql >> 4], 2).view(n, 8, 32)
    high = _bits(b[:, 128:192].reshape(n, 2, 32), 2).view(n, 8, 32)
    groups = out.view(n, 16, 16)
    groups.copy_((low | (high << 4)).view(torch.int8).view(n, 16, 16) - 32)
    groups.mul_(d)


FORMATS: dict[T, BlockFormat] = {
    T.F32: BlockFormat(1, 4, lambda b, out: _float(out, b, torch.float32)),
    T.F16: BlockFormat(1, 2, _f16),
    T.BF16: BlockFormat(1, 2, lambda b, out: _float(out, b, torch.bfloat16)),
    T.Q4_0: BlockFormat(32, 18, _q4_0),
    T.Q4_1: BlockFormat(32, 20, _q4_1),
    T.Q5_0: BlockFormat(32, 22, _q5_0),
    T.Q5_1: BlockFormat(32, 24, _q5_1),
    T.Q8_0: BlockFormat(32, 34, _q8_0),
    T.Q2_K: BlockFormat(QK_K, 84, _q2_k),
    T.Q3_K: BlockFormat(QK_K, 110, _q3_k),
    T.Q4_K: BlockFormat(QK_K, 144, _q4_k),
    T.Q5_K: BlockFormat(QK_K, 176, _q5_k),
    T.Q6_K: BlockFormat(QK_K, 210, _q6_k),
    T.IQ4_NL: BlockFormat(32, 18, _iq4_nl),
}
SUPPORTED_TYPES: tuple[str, ...] = tuple(t.name for t in FORMATS)


def empty_tensor(n_elements: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """An uninitialized 1-D tensor; on the CPU backed by numpy's huge-page-advised allocation.

    Writing fresh memory is bound by page faults; numpy asks the kernel for transparent huge pages on
    large allocations, which makes the first write several times faster than torch.empty's.
    """
    if torch.device(device).type != "cpu":
        return torch.empty(n_elements, dtype=dtype, device=device)
    itemsize = torch.empty((), dtype=dtype).element_size()
    return torch.from_numpy(np.empty(n_elements * itemsize, dtype=np.uint8)).view(dtype)


def dequantize(
    raw: torch.Tensor,
    ggml_type: T,
    shape: tuple[int, ...],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Decode ``raw`` (1-D uint8, the tensor's bytes) of ``ggml_type`` into a ``shape`` tensor.

    Runs on ``raw``'s device. Raises KeyError for types without a kernel (callers name the tensor).
    """
    fmt = FORMATS[ggml_type]
    blocks = raw.view(-1, fmt.block_bytes)
    n_blocks = blocks.shape[0]
    out = empty_tensor(n_blocks * fmt.block_elems, dtype, raw.device).view(n_blocks, fmt.block_elems)
    on_cpu = raw.device.type == "cpu"
    step = max(1, (CPU_CHUNK_ELEMENTS if on_cpu else DEVICE_CHUNK_ELEMENTS) // fmt.block_elems)
    scratch = None if dtype == torch.float32 else torch.empty(0, device=raw.device)
    for start in range(0, n_blocks, step):
        stop = min(start + step, n_blocks)
        if scratch is None:
            fmt.kernel(blocks[start:stop], out[start:stop])
        else:
            chunk = scratch.new_empty((stop - start, fmt.block_elems))
            fmt.kernel(blocks[start:stop], chunk)
            out[start:stop].copy_(chunk)
    return out.view(shape)
