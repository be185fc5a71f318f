"""Dequantization of ggml block formats in vectorized torch: one code path for CPU and CUDA.

Every kernel reproduces gguf-py's arithmetic operation by operation (the same products and sums in
float32, in the same order), so results are bit-exact against ``gguf.quants.dequantize``. On the CPU
the blocks are processed in chunks whose temporaries stay in cache; only the final values travel to main
memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from gguf import GGMLQuantizationType as T

QK_K = 256
IQ4_NL_VALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)
CPU_CHUNK_ELEMENTS = 1 << 20
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


def _bytes(blocks: torch.Tensor, start: int, stop: int | None = None) -> torch.Tensor:
    """Bytes ``start:stop`` of every block, contiguous (strided rows of a few bytes vectorize badly)."""
    return blocks[:, start:stop].contiguous()


def _bits(raw: torch.Tensor, n_bits: int, dim: int = -2) -> torch.Tensor:
    """Split bytes into 8 // n_bits fields of ``n_bits`` (lowest first), stacked at ``dim``.

    Shifts by python scalars: torch's broadcast of a small shift tensor is several times slower.
    """
    mask = (1 << n_bits) - 1
    fields = [raw & mask] + [(raw >> shift) & mask for shift in range(n_bits, 8 - n_bits, n_bits)]
    return torch.stack([*fields, raw >> (8 - n_bits)], dim)


def _bit_of_each_element(qh: torch.Tensor) -> torch.Tensor:
    """Bit j of the little-endian words ``qh`` (n, 4) for j = 0..31, as (n, 32) uint8."""
    return _bits(qh, 1, dim=-1).view(-1, 32)


def _k_scales(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack Q4_K/Q5_K's 12 bytes into 8 six-bit scales and 8 six-bit mins, as float32."""
    d, m, md = raw.view(-1, 3, 4).unbind(1)
    scales = torch.cat([d & 63, (md & 15) | ((d >> 2) & 48)], 1)
    mins = torch.cat([m & 63, (md >> 4) | ((m >> 2) & 48)], 1)
    return scales.float(), mins.float()


def _q3_k_scales(raw: torch.Tensor) -> torch.Tensor:
    """Unpack Q3_K's 12 bytes into 16 signed six-bit scales, as float32."""
    low = _bits(raw[:, :8], 4).flatten(1)
    high = _bits(raw[:, 8:], 2).flatten(1)
    return ((low | (high << 4)).view(torch.int8) - 32).float()


def _float(b: torch.Tensor, out: torch.Tensor, dtype: torch.dtype) -> None:
    out.copy_(b.view(dtype).view(out.shape))


def _f16(b: torch.Tensor, out: torch.Tensor) -> None:
    _float(b, out, torch.float16)
    if out.amax().isnan():  # amax propagates NaN and is far cheaper than isnan().any()
        # the hardware conversion quiets signalling NaNs; numpy keeps their bits
        halves = b.view(torch.int16).view(out.shape)
        nan = (halves & 0x7FFF) > 0x7C00
        bits = halves[nan].int() & 0xFFFF
        out.view(torch.int32)[nan] = ((bits & 0x8000) << 16) | 0x7F800000 | ((bits & 0x3FF) << 13)


def _offset_quants(q: torch.Tensor, offset: int) -> torch.Tensor:
    """Unsigned quants minus ``offset``, as int8 (uint8 arithmetic wraps to the right bits)."""
    return (q - offset).view(torch.int8)


def _q4_0(b: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(_offset_quants(_bits(_bytes(b, 2), 4).view(-1, 32), 8))
    out.mul_(_scale(b, 0))


def _q4_1(b: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(_bits(_bytes(b, 4), 4).view(-1, 32))
    out.mul_(_scale(b, 0)).add_(_scale(b, 2))


def _five_bit_quants(b: torch.Tensor, qh_start: int) -> torch.Tensor:
    """Q5 quants: the nibbles after ``qh`` with bit j of the little-endian word ``qh`` as 5th bit."""
    low = _bits(_bytes(b, qh_start + 4), 4).view(-1, 32)
    return low | (_bit_of_each_element(_bytes(b, qh_start, qh_start + 4)) << 4)


def _q5_0(b: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(_offset_quants(_five_bit_quants(b, 2), 16))
    out.mul_(_scale(b, 0))


def _q5_1(b: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(_five_bit_quants(b, 4))
    out.mul_(_scale(b, 0)).add_(_scale(b, 2))


def _q8_0(b: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(_bytes(b, 2).view(torch.int8))
    out.mul_(_scale(b, 0))


def _iq4_nl(b: torch.Tensor, out: torch.Tensor) -> None:
    table = torch.tensor(IQ4_NL_VALUES, dtype=torch.float32, device=b.device)
    out.copy_(table[_bits(_bytes(b, 2), 4).view(-1, 32).int()])
    out.mul_(_scale(b, 0))


def _q2_k(b: torch.Tensor, out: torch.Tensor) -> None:
    n = b.shape[0]
    scales = _bytes(b, 0, 16)
    dl = (_scale(b, 80) * (scales & 15).float()).unsqueeze(-1)
    ml = (_scale(b, 82) * (scales >> 4).float()).unsqueeze(-1)
    groups = out.view(n, 16, 16)
    groups.copy_(_bits(_bytes(b, 16, 80).view(n, 2, 32), 2).view(n, 16, 16))
    groups.mul_(dl).sub_(ml)


def _q3_k(b: torch.Tensor, out: torch.Tensor) -> None:
    n = b.shape[0]
    dl = (_scale(b, 108) * _q3_k_scales(_bytes(b, 96, 108))).unsqueeze(-1)
    low = _bits(_bytes(b, 32, 96).view(n, 2, 32), 2).view(n, 256)
    high = _bits(_bytes(b, 0, 32), 1).view(n, 256)
    groups = out.view(n, 16, 16)
    groups.copy_(_offset_quants(low | (high << 2), 4).view(n, 16, 16))
    groups.mul_(dl)


def _k_quant_4_5(b: torch.Tensor, out: torch.Tensor, with_high_bit: bool) -> None:
    n = b.shape[0]
    scales, mins = _k_scales(_bytes(b, 4, 16))
    d = (_scale(b, 0) * scales).unsqueeze(-1)
    dm = (_scale(b, 2) * mins).unsqueeze(-1)
    q = _bits(_bytes(b, -128).view(n, 4, 32), 4).view(n, 8, 32)
    if with_high_bit:
        q |= _bits(_bytes(b, 16, 48), 1) << 4
    groups = out.view(n, 8, 32)
    groups.copy_(q)
    groups.mul_(d).sub_(dm)


def _q4_k(b: torch.Tensor, out: torch.Tensor) -> None:
    _k_quant_4_5(b, out, with_high_bit=False)


def _q5_k(b: torch.Tensor, out: torch.Tensor) -> None:
    _k_quant_4_5(b, out, with_high_bit=True)


def _q6_k(b: torch.Tensor, out: torch.Tensor) -> None:
    n = b.shape[0]
    d = (_scale(b, 208) * _bytes(b, 192, 208).view(torch.int8).float()).unsqueeze(-1)
    low = _bits(_bytes(b, 0, 128).view(n, 2, 64), 4).view(n, 8, 32)
    high = _bits(_bytes(b, 128, 192).view(n, 2, 32), 2).view(n, 8, 32)
    groups = out.view(n, 16, 16)
    groups.copy_(_offset_quants(low | (high << 4), 32).view(n, 16, 16))
    groups.mul_(d)


FORMATS: dict[T, BlockFormat] = {
    T.F32: BlockFormat(1, 4, lambda b, out: _float(b, out, torch.float32)),
    T.F16: BlockFormat(1, 2, _f16),
    T.BF16: BlockFormat(1, 2, lambda b, out: _float(b, out, torch.bfloat16)),
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
    out = torch.empty(n_blocks, fmt.block_elems, dtype=dtype, device=raw.device)
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
