"""One call from a GGUF file (or source string) to a ready PHFE model."""

from __future__ import annotations

import os

import torch

from phfe.inference import resolve_source, tensor_loading_context
from phfe.models.config import model_args_from_gguf
from phfe.models.decoder import Decoder
from phfe.models.patcher import patch_from_loader


def build_model(
    source: str | os.PathLike[str], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Decoder:
    """Build the model a GGUF file holds, weights dequantized to ``dtype`` on ``device``, in eval mode.

    ``source`` is a path or a source string (see :func:`phfe.inference.resolve_source`); the resolved path is
    kept as ``model.source`` and the loading stats as ``model.load_stats``. The decoder is created on the
    meta device and receives the file's tensors directly, so memory peaks at the weights in ``dtype`` (plus
    one tensor being dequantized).
    """
    path = resolve_source(os.fspath(source))
    with tensor_loading_context(path) as loader:
        args = model_args_from_gguf(loader.metadata, loader.tensors)
        with torch.device("meta"):
            model = Decoder(args)
        model.load_stats = patch_from_loader(loader, model, device, dtype)
    model.source = path
    return model.eval()
