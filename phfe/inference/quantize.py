"""Quantization to ggml block formats in vectorized torch: one code path for CPU and CUDA.

Every kernel reproduces gguf-py's float32 arithmetic operation by operation, so the bytes equal
``gguf.quants.quantize``'s (on x86, whose casts gguf-py relies on; see :func:`_cast_bytes`). Divisions
by a constant use a device tensor, not a Python number: CUDA would multiply by the reciprocal. On the
CPU the blocks are processed in chunks whose temporaries stay in cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from phfe.inference.dequant import CPU_CHUNK_ELEMENTS, DEVICE_CHUNK_ELEMENTS, empty_tensor

Kernel = Callable[[torch.Tensor, torch.Tensor], None]
INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class UnsupportedQuantizationError(ValueError):
    """A ggml type that :func:`quantize` cannot produce; names the type, the tensor and the supported ones."""

    def __init__(self, ggml_type: T | int, name: str | None = None):
        self.ggml_type = ggml_type
        self.tensor = name
        type_name = ggml_type.name if isinstance(ggml_type, T) else str(ggml_type)
        subject = f"tensor {name!r}" if name is not None else "a tensor"
        super().__init__(
            f"cannot quantize {subject} to ggml type {type_name} "
            f"(supported: {', '.join(SUPPORTED_QUANT_TYPES)})"
        )


def _const(value: float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a float32 tensor on ``like``'s device, so that dividing by it is a true division."""
    return torch.tensor(value, dtype=torch.float32, device=like.device)


def _f16_into(dst: torch.Tensor, x: torch.Tensor) -> None:
    """Write float32 ``x`` as numpy's float16 bits into ``dst`` (uint8, twice ``x``'s last dimension).

    Finite values and infinities convert as in hardware (round to nearest even); numpy keeps a NaN's
    sign and top mantissa bits (making it 0x7C01 if they are all zero) where hardware quiets it.
    """
    out = dst.view(torch.int16)
    out.copy_(x.half().view(torch.int16))
    nan = x.isnan()
    if nan.any():
        bits = x.view(torch.int32)
        exact = ((bits >> 16) & -0x8000) | 0x7C00 | ((bits >> 13) & 0x3FF).clamp(min=1)
        out.copy_(torch.where(nan, exact.to(torch.int16), out))


def _cast_bytes(q: torch.Tensor, top: int = 255) -> torch.Tensor:
    """numpy's x86 cast of integral float32 ``q`` to uint8 (or int8), then ``.clip(0, top)``.

    x86 converts through int32 and keeps the low byte (out-of-range and NaN give 0x80000000, so 0):
    exactly ``q`` mod 256 for finite ``q``, 0 for NaN and infinities. Consumes ``q``.
    """
    q = q.remainder_(256)
    if top < 255:
        q.clamp_(max=top)
    return q.nan_to_num_(0.0).to(torch.uint8)


def _pack_nibbles(dst: torch.Tensor, q: torch.Tensor) -> None:
    """Pack (n, 32) quants into (n, 16) bytes: element j in the low nibble of byte j, element j + 16 high."""
    torch.bitwise_or(q[:, :16] & 15, q[:, 16:] << 4, out=dst)


def _pack_high_bits(dst: torch.Tensor, q: torch.Tensor) -> None:
    """Write bit 4 of (n, 32) quants into (n, 4) bytes, the little-endian u32 ``qh`` (bit j: element j)."""
    w = (q >> 4).view(torch.int64)  # eight 0/1 bytes a lane; fold each lane's bits into its low byte
    w = w | (w >> 7)
    w = w | (w >> 14)
    w = w | (w >> 28)
    dst.copy_(w & 255)


def _symmetric(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_0/Q5_0: the scale ``max / -levels`` (max: the first value of largest magnitude) and the quants."""
    signed_max = x.gather(-1, x.abs().argmax(-1, keepdim=True))
    d = signed_max / -levels  # a power of two: exact also as CUDA's reciprocal product
    inv = torch.where(d == 0, 0.0, d.reciprocal())
    q = (x * inv).add_(levels + 0.5).trunc_()
    return d, _cast_bytes(q, 2 * levels - 1)


def _affine(x: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q4_1/Q5_1: the scale ``(max - min) / top``, the minimum and the quants."""
    lo, hi = torch.aminmax(x, dim=-1, keepdim=True)
    d = (hi - lo) / _const(top, x)
    inv = torch.where(d == 0, 0.0, d.reciprocal())
    q = (x - lo).mul_(inv).add_(0.5).trunc_()
    return d, lo, _cast_bytes(q, top)


def _q4_0(x: torch.Tensor, out: torch.Tensor) -> None:
    d, q = _symmetric(x, 8)
    _f16_into(out[:, :2], d)
    _pack_nibbles(out[:, 2:], q)


def _q5_0(x: torch.Tensor, out: torch.Tensor) -> None:
    d, q = _symmetric(x, 16)
    _f16_into(out[:, :2], d)
    _pack_high_bits(out[:, 2:6], q)
    _pack_nibbles(out[:, 6:], q)


def _q4_1(x: torch.Tensor, out: torch.Tensor) -> None:
    d, m, q = _affine(x, 15)
    _f16_into(out[:, :2], d)
    _f16_into(out[:, 2:4], m)
    _pack_nibbles(out[:, 4:], q)


def _q5_1(x: torch.Tensor, out: torch.Tensor) -> None:
    d, m, q = _affine(x, 31)
    _f16_into(out[:, :2], d)
    _f16_into(out[:, 2:4], m)
    _pack_high_bits(out[:, 4:8], q)
    _pack_nibbles(out[:, 8:], q)


def _q8_0(x: torch.Tensor, out: torch.Tensor) -> None:
    d = x.abs().amax(-1, keepdim=True) / _const(127, x)
    inv = torch.where(d == 0, 0.0, d.reciprocal())
    v = x * inv
    # gguf-py's np_roundf, rounding half away from zero: floor(|v|) + floor(2 * frac), frac exact
    a = v.abs()
    whole = a.floor()
    rounded = whole.add_(a - whole >= 0.5).copysign_(v)
    _f16_into(out[:, :2], d)
    out[:, 2:].copy_(_cast_bytes(rounded))


def _f32(x: torch.Tensor, out: torch.Tensor) -> None:
    out.view(torch.float32).copy_(x)


def _f16(x: torch.Tensor, out: torch.Tensor) -> None:
    _f16_into(out, x)


def _bf16(x: torch.Tensor, out: torch.Tensor) -> None:
    """ggml_compute_fp32_to_bf16 as gguf-py writes it, in int32 (no step can overflow: see below)."""
    n = x.view(torch.int32)
    # quiet NaNs: keep the sign and top mantissa bits, set bit 22
    n = torch.where((n & 0x7FFFFFFF) > 0x7F800000, (n & -0x10000) | 0x400000, n)
    # round to nearest even; a non-NaN's positive bits plus 0x8000 stay below 2**31
    out.view(torch.int16).copy_(((n + 0x7FFF + ((n >> 16) & 1)) >> 16).to(torch.int16))


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

    The bytes equal ``gguf.quants.quantize(values.float().numpy(), ggml_type)``'s. float16 and bfloat16
    values are widened to float32 first. Runs on ``values``' device. ``name`` (the tensor's) only
    goes into error messages.
    """
    kernel = KERNELS.get(ggml_type)
    if kernel is None:
        raise UnsupportedQuantizationError(ggml_type, name)
    subject = f"tensor {name!r}" if name is not None else "tensor"
    if values.dtype not in INPUT_DTYPES:
        raise TypeError(
            f"cannot quantize {subject} of dtype {values.dtype}: expected float32, float16 or bfloat16"
        )
    block_elems, block_bytes = GGML_QUANT_SIZES[ggml_type]
    if values.dim() == 0 or values.shape[-1] % block_elems:
        raise ValueError(
            f"cannot quantize {subject} of shape {tuple(values.shape)} to {T(ggml_type).name}: "
            f"rows must be a multiple of its block size {block_elems}"
        )
    blocks = values.reshape(-1, block_elems)
    n_blocks = blocks.shape[0]
    out = empty_tensor(n_blocks * block_bytes, torch.uint8, values.device).view(n_blocks, block_bytes)
    chunk_elements = CPU_CHUNK_ELEMENTS if values.device.type == "cpu" else DEVICE_CHUNK_ELEMENTS
    step = max(1, chunk_elements // block_elems)
    for start in range(0, n_blocks, step):
        stop = min(start + step, n_blocks)
        kernel(blocks[start:stop].float(), out[start:stop])
    return out.view(*values.shape[:-1], values.shape[-1] // block_elems * block_bytes)
