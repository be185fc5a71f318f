"""Write a GGUF file's model at another precision: the file that ``q=q4_0`` and friends run on.

The rule: every tensor of two or more dimensions whose rows hold whole blocks of the target type is
converted to it (from its dequantized float32 values; a tensor already of the target type is copied
byte for byte); one-dimensional tensors (norms, biases) are stored as F32; a matrix whose rows do not
hold whole blocks falls back to F16. Metadata and tokenizer are carried over unchanged except
``general.file_type``. The file is written tensor by tensor (memory bounded by one tensor) to a
temporary name and renamed when complete.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, LlamaFileType
from tqdm.auto import tqdm

from phfe.inference.gguf_file import TensorInfo
from phfe.inference.loading import TensorLoader, tensor_loading_context
from phfe.inference.quantize import UnsupportedQuantizationError, quantize

logger = logging.getLogger(__name__)

T = GGMLQuantizationType
FILE_TYPES: dict[T, LlamaFileType] = {
    T.F32: LlamaFileType.ALL_F32,
    T.F16: LlamaFileType.MOSTLY_F16,
    T.BF16: LlamaFileType.MOSTLY_BF16,
    T.Q8_0: LlamaFileType.MOSTLY_Q8_0,
    T.Q4_0: LlamaFileType.MOSTLY_Q4_0,
    T.Q4_1: LlamaFileType.MOSTLY_Q4_1,
    T.Q5_0: LlamaFileType.MOSTLY_Q5_0,
    T.Q5_1: LlamaFileType.MOSTLY_Q5_1,
}
WRITER_OWNED_KEYS = ("general.architecture", "general.alignment")


def target_type(info: TensorInfo, ggml_type: T) -> T:
    """The type a tensor gets in a file converted to ``ggml_type`` (see the module docstring)."""
    if len(info.shape) < 2:
        return T.F32
    if info.shape[-1] % GGML_QUANT_SIZES[ggml_type][0]:
        return T.F16
    return ggml_type


def _metadata_value(value: object) -> object:
    """A parsed metadata value in the form GGUFWriter packs (sequences, not numpy arrays)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [_metadata_value(item) for item in value]
    return value


def _copy_metadata(loader: TensorLoader, writer: GGUFWriter, ggml_type: T) -> None:
    header = loader.header
    if header.alignment != writer.data_alignment:
        writer.add_custom_alignment(header.alignment)
    for key, value in header.metadata.items():
        if key in WRITER_OWNED_KEYS:
            continue
        vtype = header.value_types[key]
        if key == "general.file_type":
            value = int(FILE_TYPES[ggml_type])
        writer.add_key_value(key, _metadata_value(value), vtype.kind, vtype.item)
    if "general.file_type" not in header.metadata:
        writer.add_file_type(int(FILE_TYPES[ggml_type]))


def _tensor_bytes(loader: TensorLoader, info: TensorInfo, out_type: T) -> np.ndarray:
    if info.type == out_type:
        return loader.read_raw(info.name).numpy().copy()
    values = loader.read_tensor(info.name)
    return quantize(values, out_type, name=info.name).numpy().reshape(-1)


def requantize(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    ggml_type: GGMLQuantizationType | str,
    progress: bool = True,
) -> Path:
    """Write the model in GGUF file ``src`` to ``dst`` with its matrices in ``ggml_type``; return ``dst``."""
    if isinstance(ggml_type, str):
        ggml_type = T.__members__.get(ggml_type.upper(), ggml_type)
    if ggml_type not in FILE_TYPES:
        raise UnsupportedQuantizationError(ggml_type)
    dst = Path(dst)
    partial = dst.with_name(f".{dst.name}.partial-{os.getpid()}")
    try:
        with tensor_loading_context(src) as loader:
            writer = GGUFWriter(partial, loader.metadata.get("general.architecture", "unknown"))
            _copy_metadata(loader, writer, ggml_type)
            plan = [(info, target_type(info, ggml_type)) for info in loader.tensors.values()]
            for info, out_type in plan:
                block_elems, block_bytes = GGML_QUANT_SIZES[out_type]
                byte_shape = (*info.shape[:-1], info.shape[-1] // block_elems * block_bytes)
                n_bytes = info.n_elements // block_elems * block_bytes
                writer.add_tensor_info(info.name, byte_shape, np.dtype(np.uint8), n_bytes, raw_dtype=out_type)
                if out_type == T.F16 and ggml_type != T.F16 and len(info.shape) >= 2:
                    logger.warning(
                        "%s: rows of %d do not hold whole %s blocks; stored as F16",
                        info.name,
                        info.shape[-1],
                        ggml_type.name,
                    )
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for info, out_type in tqdm(plan, desc=f"{ggml_type.name} {dst.name}", unit="tensor", disable=not progress):
                writer.write_tensor_data(_tensor_bytes(loader, info, out_type))
            writer.close()
        os.replace(partial, dst)
    finally:
        partial.unlink(missing_ok=True)
    return dst
