"""GGUF I/O and inference: header parsing, torch (de)quantization, model sources."""

from phfe.inference.dequant import SUPPORTED_TYPES, dequantize
from phfe.inference.errors import (
    ChecksumMismatchError,
    GGUFError,
    GGUFFormatError,
    SourceError,
    TensorNotFoundError,
    UnsupportedTensorTypeError,
)
from phfe.inference.gguf_file import GGUFHeader, TensorInfo, inspect_gguf, read_header
from phfe.inference.loading import (
    StreamingDequantizer,
    TensorLoader,
    streaming_dequant_context,
    tensor_loading_context,
)
from phfe.inference.quantize import UnsupportedQuantizationError, quantize
from phfe.inference.requantize import requantize
from phfe.inference.sources import KNOWN_SOURCES, default_cache_dir, parse_source, resolve_source

__all__ = [
    "GGUFModelPatcher",
    "KNOWN_SOURCES",
    "SUPPORTED_TYPES",
    "UnsupportedQuantizationError",
    "default_cache_dir",
    "parse_source",
    "quantize",
    "requantize",
    "resolve_source",
    "ChecksumMismatchError",
    "GGUFError",
    "GGUFFormatError",
    "GGUFHeader",
    "SourceError",
    "StreamingDequantizer",
    "TensorInfo",
    "TensorLoader",
    "TensorNotFoundError",
    "UnsupportedTensorTypeError",
    "dequantize",
    "inspect_gguf",
    "read_header",
    "streaming_dequant_context",
    "tensor_loading_context",
]


def __getattr__(name: str) -> object:
    """``GGUFModelPatcher`` lives with the models it patches; imported lazily to keep the layers acyclic."""
    if name == "GGUFModelPatcher":
        from phfe.models.patcher import GGUFModelPatcher

        return GGUFModelPatcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
