"""Load a GGUF file's tensors into a model: PHFE's own decoder, or a transformers model of the same family.

Every check (names, shapes, types) runs before any weight is read, and the new weights replace the
model's parameters only once all of them are ready: an error leaves the model exactly as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from phfe.inference import SUPPORTED_TYPES, GGUFError, TensorLoader, UnsupportedTensorTypeError
from phfe.inference.loading import tensor_loading_context
from phfe.models.decoder import Decoder

# GGUF name inside ``blk.N.`` -> transformers name inside ``model.layers.N.``
HF_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
HF_GEMMA_LAYER_NAMES = {
    **HF_LAYER_NAMES,
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
HF_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
HF_MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3": "gemma3", "gemma3_text": "gemma3"}

Transform = Callable[[str, torch.Tensor], torch.Tensor]


class PatchError(GGUFError):
    """The file does not fit the model: a missing tensor, a shape mismatch; names the tensor."""


def hf_name(gguf_name: str, arch: str) -> str | None:
    """The transformers parameter a GGUF tensor loads into, or None if it has none (e.g. ``rope_freqs``)."""
    module, _, leaf = gguf_name.rpartition(".")
    parts = module.split(".")
    if parts[0] == "blk" and len(parts) == 3:
        layer_names = HF_GEMMA_LAYER_NAMES if arch == "gemma3" else HF_LAYER_NAMES
        mapped = layer_names.get(parts[2])
        return f"model.layers.{parts[1]}.{mapped}.{leaf}" if mapped else None
    mapped = HF_TOP_NAMES.get(module)
    return f"{mapped}.{leaf}" if mapped else None


def _unpermute(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row permutation (adjacent-pair RoPE back to transformers' halves)."""
    rows = weight.shape[0]
    return weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def _hf_transform(model: nn.Module, arch: str) -> Transform:
    config = model.config

    def transform(name: str, tensor: torch.Tensor) -> torch.Tensor:
        if arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = config.num_attention_heads if "attn_q" in name else config.num_key_value_heads
            return _unpermute(tensor, heads)
        if arch == "gemma3" and name.endswith("norm.weight"):
            return tensor - 1  # transformers computes x * (1 + w); GGUF stores 1 + w
        return tensor

    return transform


def _name_map(model: nn.Module, loader: TensorLoader) -> tuple[Callable[[str], str | None], Transform]:
    if isinstance(model, Decoder):
        return (lambda name: name), (lambda name, tensor: tensor)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    arch = HF_MODEL_TYPES.get(model_type)
    if arch is None:
        raise PatchError(
            loader.path,
            f"cannot patch a {type(model).__name__} (model_type {model_type!r}); PHFE maps GGUF names to "
            f"its own Decoder and to transformers models of type {', '.join(HF_MODEL_TYPES)}",
        )
    return (lambda name: hf_name(name, arch)), _hf_transform(model, arch)


def _set_parameter(model: nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    module.register_parameter(leaf, nn.Parameter(value, requires_grad=False))


def patch_from_loader(
    loader: TensorLoader,
    model: nn.Module,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Load every tensor of an open GGUF file into ``model``'s matching parameter; return stats."""
    started = time.perf_counter()
    to_target, transform = _name_map(model, loader)
    params = dict(model.named_parameters())
    plan: dict[str, str] = {}
    skipped: list[str] = []
    for name, info in loader.tensors.items():
        target = to_target(name)
        if target not in params:
            skipped.append(name)
            continue
        expected = tuple(params[target].shape)
        if info.shape != expected:
            raise PatchError(loader.path, f"tensor {name!r} has shape {info.shape}, but {target!r} expects {expected}")
        if info.type.name not in SUPPORTED_TYPES:
            raise UnsupportedTensorTypeError(loader.path, name, info.type.name, list(SUPPORTED_TYPES))
        plan[name] = target
    missing = sorted(set(params) - set(plan.values()))
    if missing:
        raise PatchError(loader.path, f"the file has no tensor for {len(missing)} parameters: {missing[:8]}")

    staged = {}
    for name, target in plan.items():
        current = params[target]
        target_device = device or (current.device if current.device.type != "meta" else "cpu")
        staged[target] = transform(name, loader.read_tensor(name, target_device, dtype or current.dtype))
        loader.release(name)
    for target, value in staged.items():
        _set_parameter(model, target, value)
    if device is not None:
        model.to(device)  # buffers (e.g. transformers' rotary frequencies) follow the weights
    if hasattr(model, "tie_weights") and not isinstance(model, Decoder):
        model.tie_weights()
    return {
        "loaded": len(plan),
        "skipped": len(skipped),
        "skipped_names": skipped,
        "bytes_read": sum(loader.tensors[name].n_bytes for name in plan),
        "parameters": sum(value.numel() for value in staged.values()),
        "seconds": time.perf_counter() - started,
    }


class GGUFModelPatcher:
    """Patches models with the weights of one GGUF file."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)

    @contextmanager
    def patch_context(
        self, model: nn.Module, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Iterator[dict[str, Any]]:
        """Patch ``model`` (all or nothing) and yield the stats; the file is closed on exit."""
        with tensor_loading_context(self.path) as loader:
            yield patch_from_loader(loader, model, device, dtype)
