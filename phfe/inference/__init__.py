"""GGUF I/O and inference: header parsing, torch (de)quantization, model sources, the paged engine."""

import importlib

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
from phfe.inference.kv_cache import CacheFullError, KVCacheManager, blocks_for_budget, estimate_kv_cache_memory
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
    "CacheFullError",
    "Engine",
    "GGUFModelPatcher",
    "KVCacheManager",
    "ScoreResult",
    "TransformersEngine",
    "blocks_for_budget",
    "estimate_kv_cache_memory",
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


# These build on phfe.models, which builds on this package: imported on first use to keep the layers acyclic.
_LAZY = {
    "Engine": "phfe.inference.engine",
    "ScoreResult": "phfe.inference.backend",
    "TransformersEngine": "phfe.inference.transformers_backend",
    "GGUFModelPatcher": "phfe.models.patcher",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
