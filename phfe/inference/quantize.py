"""Quantization to ggml block formats in vectorized torch: one code path for CPU and CUDA.

Every kernel reproduces gguf-py's float32 arithmetic operation by operation, so the bytes equal
``gguf.quants.quantize``'s. Where gguf-py leans on numpy's x86 float-to-uint8 cast (out-of-range and
non-finite quants, which only blocks with a non-finite, overflowing or subnormal scale produce), such
chunks take a slower path that emulates that cast. Divisions by a constant use a device tensor rather
than a Python number, which CUDA would turn into a product with the reciprocal. On the CPU the blocks
are processed in chunks whose temporaries stay in cache.

Not reproduced: the NaN bits (sign, payload) of a NaN block's float16 scale for Q4_1, Q5_1 and Q8_0,
and the sign of a zero minimum or maximum that ties +0.0 with -0.0 for Q4_1 and Q5_1; numpy's min/max
reductions decide both by SIMD lane order. On CUDA, arithmetic on NaN yields the canonical NaN, so a
NaN block's scale bits differ there for every block type.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from phfe.inference.dequant import DEVICE_CHUNK_ELEMENTS

Kernel = Callable[[torch.Tensor, torch.Tensor], None]
INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Kernels run ~20 small ops per chunk; at 2**19 elements their overhead fades (measured: 30% faster
# than 2**17) while a chunk's temporaries still fit in L3.
CPU_CHUNK_ELEMENTS = 1 << 19
FLT_MIN = torch.finfo(torch.float32).tiny
FLT_MAX = torch.finfo(torch.float32).max
LOW_NIBBLES = 0x0F0F0F0F0F0F0F0F
LOW_BITS = 0x0101010101010101


class UnsupportedQuantizationError(ValueError):
    """A ggml type that :func:`quantize` cannot produce; names the type, the tensor and the supported ones."""

    def __init__(self, ggml_type: T | int, name: str | None = None):
        self.ggml_type = ggml_type
        self.tensor = name
        type_name = ggml_type.name if isinstance(ggml_type, T) else str(ggml_type)
        subject = f"tensor {name!r}" if name is not None else "a tensor"
        super().__init__(
            f"cannot quantize {subject} to ggml type {type_name} (supported: {', '.join(SUPPORTED_QUANT_TYPES)})"
        )


def _const(value: float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a float32 tensor on ``like``'s device, so that dividing by it is a true division."""
    return torch.tensor(value, dtype=torch.float32, device=like.device)


def _has_nan(x: torch.Tensor) -> bool:
    return bool(x.amax().isnan())  # a full amax propagates NaN and is far cheaper than isnan().any()


def _f16_into(dst: torch.Tensor, x: torch.Tensor) -> None:
    """Write float32 ``x`` as numpy's float16 bits into ``dst`` (uint8, twice ``x``'s last dimension).

    Finite values and infinities convert as in hardware (round to nearest even); numpy keeps a NaN's
    sign and top mantissa bits (0x7C01 if they are all zero) where hardware quiets it.
    """
    out = dst.view(torch.int16)
    out.copy_(x.half().view(torch.int16))
    if _has_nan(x):
        bits = x.view(torch.int32)
        exact = ((bits >> 16) & -0x8000) | 0x7C00 | ((bits >> 13) & 0x3FF).clamp(min=1)
        out.copy_(torch.where(x.isnan(), exact.to(torch.int16), out))


def _well_scaled(d: torch.Tensor) -> bool:
    """Whether every scale is 0 or normal: then the quants stay within the type's range."""
    a = d.abs()
    return bool((((a >= FLT_MIN) & (a <= FLT_MAX)) | (a == 0)).all())


def _numpy_bytes(q: torch.Tensor, top: int = 255) -> torch.Tensor:
    """numpy's x86 cast of float32 ``q`` (trunc'ed in place) to uint8 or int8, then ``.clip(0, top)``.

    x86 converts through int32 and keeps the low byte (out-of-range and NaN give 0x80000000, so 0):
    ``trunc(q)`` mod 256 for finite ``q``, 0 for NaN and infinities. Returns the bytes as int8.
    """
    q = q.trunc_().remainder_(256)
    if top < 255:
        q.clamp_(max=top)
    return q.nan_to_num_(0.0).to(torch.uint8).view(torch.int8)


def _quants(q: torch.Tensor, top: int, fast: bool) -> torch.Tensor:
    """``trunc(q)`` cast to uint8 and clipped to ``top`` as gguf-py does, as int8; consumes ``q``.

    ``fast``: every scale is 0 or normal, so ``trunc(q)`` lies in [0, top + 1] and converts plainly.
    """
    return q.to(torch.int8).clamp_max_(top) if fast else _numpy_bytes(q, top)


def _pack_nibbles(dst: torch.Tensor, q: torch.Tensor, five_bit: bool) -> None:
    """Pack (n, 32) quants into (n, 16) bytes: element j in the low nibble of byte j, element j + 16 high.

    Works on int64 lanes of eight quants: with bit 4 masked off, shifting never carries across bytes.
    """
    w = q.view(torch.int64)
    if five_bit:
        w = w & LOW_NIBBLES
    dst.copy_((w[:, :2] | (w[:, 2:] << 4)).view(torch.uint8))


def _pack_high_bits(dst: torch.Tensor, q: torch.Tensor) -> None:
    """Write bit 4 of (n, 32) quants into (n, 4) bytes, the little-endian u32 ``qh`` (bit j: element j)."""
    w = (q.view(torch.int64) >> 4) & LOW_BITS  # eight 0/1 bytes a lane; fold them into its low byte
    w = w | (w >> 7)
    w = w | (w >> 14)
    w = w | (w >> 28)
    dst.copy_(w & 255)


def _signed_max(x: torch.Tensor) -> torch.Tensor:
    """Per block, the first value of largest magnitude: ``take_along_axis(x, argmax(abs(x)))``.

    A block's max or min decides it unless their magnitudes tie (or it holds NaN); only those blocks
    go through argmax, which is slow on short rows but keeps numpy's first-occurrence rule.
    """
    hi = x.amax(-1, keepdim=True)
    lo = x.amin(-1, keepdim=True)
    use_lo = -lo > hi
    picked = torch.where(use_lo, lo, hi)
    ambiguous = (~(use_lo | (hi > -lo))).view(-1).nonzero().view(-1)
    if ambiguous.numel():
        tied = x[ambiguous]
        picked[ambiguous] = tied.gather(-1, tied.abs().argmax(-1, keepdim=True))
    return picked


def _symmetric(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_0/Q5_0: the scale ``max / -levels`` and the quants ``trunc(x / d + levels + 0.5)``."""
    d = _signed_max(x) / -levels  # a power of two: exact also as CUDA's product with the reciprocal
    inv = torch.where(d == 0, 0.0, d.reciprocal())
    q = (x * inv).add_(levels + 0.5)
    return d, _quants(q, 2 * levels - 1, _well_scaled(d))


def _affine(x: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q4_1/Q5_1: the scale ``(max - min) / top``, the minimum and the quants."""
    hi = x.amax(-1, keepdim=True)
    lo = x.amin(-1, keepdim=True)
    d = (hi - lo) / _const(top, x)
    inv = torch.where(d == 0, 0.0, d.reciprocal())
    q = (x - lo).mul_(inv).add_(0.5)
    return d, lo, _quants(q, top, _well_scaled(d))


def _q4_0(x: torch.Tensor, out: torch.Tensor) -> None:
    d, q = _symmetric(x, 8)
    _f16_into(out[:, :2], d)
    _pack_nibbles(out[:, 2:], q, five_bit=False)


def _q5_0(x: torch.Tensor, out: torch.Tensor) -> None:
    d, q = _symmetric(x, 16)
    _f16_into(out[:, :2], d)
    _pack_high_bits(out[:, 2:6], q)
    _pack_nibbles(out[:, 6:], q, five_bit=True)


def _q4_1(x: torch.Tensor, out: torch.Tensor) -> None:
    d, m, q = _affine(x, 15)
    _f16_into(out[:, :2], d)
    _f16_into(out[:, 2:4], m)
    _pack_nibbles(out[:, 4:], q, five_bit=False)


def _q5_1(x: torch.Tensor, out: torch.Tensor) -> None:
    d, m, q = _affine(x, 31)
    _f16_into(out[:, :2], d)
    _f16_into(out[:, 2:4], m)
    _pack_high_bits(out[:, 4:8], q)
    _pack_nibbles(out[:, 8:], q, five_bit=True)


def _q8_0(x: torch.Tensor, out: torch.Tensor) -> None:
    """Q8_0: ``d = max|x| / 127`` and gguf-py's ``np_roundf(x / d)``, rounding half away from zero."""
    d = x.abs().amax(-1, keepdim=True) / _const(127, x)
    inv = torch.where(d == 0, 0.0, d.reciprocal())
    v = x * inv
    _f16_into(out[:, :2], d)
    quants = out[:, 2:].view(torch.int8)
    if _well_scaled(d):  # |v| <= 127: trunc(v) + trunc(2 * frac(v)), every step exact
        whole = v.to(torch.int8)
        torch.add(whole, v.sub_(whole.float()).mul_(2).to(torch.int8), out=quants)
    else:  # np_roundf verbatim, then numpy's cast
        a = v.abs()
        floored = a.floor()
        rounded = (a - floored).mul_(2).floor_().add_(floored).mul_(v.sign())
        quants.copy_(_numpy_bytes(rounded))


def _f32(x: torch.Tensor, out: torch.Tensor) -> None:
    out.view(torch.float32).view(-1).copy_(x.view(-1))


def _f16(x: torch.Tensor, out: torch.Tensor) -> None:
    _f16_into(out.view(-1), x.view(-1))


def _bf16(x: torch.Tensor, out: torch.Tensor) -> None:
    """ggml_compute_fp32_to_bf16 as gguf-py writes it, in int32 (no step can overflow)."""
    n = x.view(-1).view(torch.int32)
    # round to nearest even: a non-NaN's bits plus 0x8000 stay below 2**31
    rounded = ((n >> 16) & 1).add_(n).add_(0x7FFF) >> 16
    if _has_nan(x):  # a NaN keeps its sign and top mantissa bits, with the quiet bit (22) set
        rounded = torch.where((n & 0x7FFFFFFF) > 0x7F800000, (n >> 16) | 0x40, rounded)
    out.view(-1).view(torch.int16).copy_(rounded)


KERNELS: dict[T, Kernel] = {
    T.F32: _f32,
    T.F16: _f16,
    T.BF16: _bf16,
    T.Q4_0: _q4_0,
    T.Q4_1: _q4_1,
    T.Q5_0: _q5_0,
    T.Q5_1: _q5_1,
    T.Q8_0: _q8_0,
}
SUPPORTED_QUANT_TYPES: tuple[str, ...] = tuple(t.name for t in KERNELS)


def quantize(values: torch.Tensor, ggml_type: T, *, name: str | None = None) -> torch.Tensor:
    """Encode ``values`` (..., n) as ``ggml_type``: uint8 (..., n // block_elems * block_bytes).

    The bytes equal ``gguf.quants.quantize(values.float().numpy(), ggml_type)``'s; float16 and
    bfloat16 values are widened to float32 first. Runs on ``values``' device. ``name`` (the tensor's)
    only goes into error messages.
    """
    kernel = KERNELS.get(ggml_type)
    if kernel is None:
        raise UnsupportedQuantizationError(ggml_type, name)
    subject = f"tensor {name!r}" if name is not None else "tensor"
    if values.dtype not in INPUT_DTYPES:
        raise TypeError(f"cannot quantize {subject} of dtype {values.dtype}: expected float32, float16 or bfloat16")
    block_elems, block_bytes = GGML_QUANT_SIZES[ggml_type]
    if values.dim() == 0 or values.shape[-1] % block_elems:
        raise ValueError(
            f"cannot quantize {subject} of shape {tuple(values.shape)} to {T(ggml_type).name}: "
            f"its rows must be a multiple of the block size {block_elems}"
        )
    blocks = values.reshape(-1, block_elems)
    n_blocks = blocks.shape[0]
    out = torch.empty(n_blocks, block_bytes, dtype=torch.uint8, device=values.device)
    chunk_elements = CPU_CHUNK_ELEMENTS if values.device.type == "cpu" else DEVICE_CHUNK_ELEMENTS
    step = max(1, chunk_elements // block_elems)
    for start in range(0, n_blocks, step):
        stop = min(start + step, n_blocks)
        kernel(blocks[start:stop].float(), out[start:stop])
    return out.view(*values.shape[:-1], values.shape[-1] // block_elems * block_bytes)
