"""Model arguments read from GGUF metadata, with the profile of each supported architecture."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class UnsupportedArchitectureError(ValueError):
    """A GGUF file whose ``general.architecture`` PHFE has no decoder profile for."""


@dataclass(frozen=True)
class Profile:
    """What distinguishes an architecture inside the one decoder implementation."""

    rope_style: str  # "norm": adjacent pairs (llama.cpp's permuted q/k); "neox": halves
    qk_norm: bool = False  # per-head RMSNorm on q and k before RoPE
    sandwich_norms: bool = False  # gemma: norms after attention and after the feed-forward too
    activation: str = "silu"  # "silu" (SwiGLU) or "gelu_tanh" (GeGLU)
    scale_embeddings: bool = False  # gemma: embeddings times sqrt(dim)
    global_every: int = 0  # gemma3: layer i is global when i % global_every == global_every - 1
    local_rope_base: float = 0.0  # gemma3: RoPE base of the sliding-window layers


PROFILES: dict[str, Profile] = {
    "llama": Profile(rope_style="norm"),
    "qwen2": Profile(rope_style="neox"),
    "qwen3": Profile(rope_style="neox", qk_norm=True),
    "gemma3": Profile(
        rope_style="neox",
        qk_norm=True,
        sandwich_norms=True,
        activation="gelu_tanh",
        scale_embeddings=True,
        global_every=6,
        local_rope_base=10000.0,
    ),
}
SUPPORTED_ARCHITECTURES = tuple(PROFILES)


@dataclass(frozen=True)
class ModelArgs:
    """Everything the decoder needs to know, in gpt-fast's style: one flat dataclass."""

    arch: str
    n_layers: int
    dim: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    value_dim: int
    ffn_dim: int
    vocab_size: int
    norm_eps: float
    context_length: int
    rope_base: float
    rope_dim: int
    rope_scale: float  # positions are divided by this (linear RoPE scaling); 1.0 = none
    attn_scale: float
    sliding_window: int  # 0: every layer attends to the whole prefix
    qkv_bias: bool
    tied_output: bool
    has_rope_freqs: bool
    profile: Profile

    def is_global(self, layer: int) -> bool:
        """Whether a layer attends globally (False: within the sliding window)."""
        every = self.profile.global_every
        return not self.sliding_window or not every or layer % every == every - 1

    def layer_rope_base(self, layer: int) -> float:
        return self.rope_base if self.is_global(layer) else self.profile.local_rope_base

    def layer_rope_scale(self, layer: int) -> float:
        return self.rope_scale if self.is_global(layer) else 1.0


def model_args_from_gguf(metadata: Mapping[str, Any], tensor_names: Iterable[str]) -> ModelArgs:
    """Read :class:`ModelArgs` from a GGUF file's metadata and tensor names."""
    arch = metadata.get("general.architecture")
    if arch not in PROFILES:
        raise UnsupportedArchitectureError(
            f"architecture {arch!r} is not supported; PHFE builds {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    names = set(tensor_names)
    profile = PROFILES[arch]

    def get(key: str, default: Any = None) -> Any:
        value = metadata.get(f"{arch}.{key}", default)
        if value is None:
            raise UnsupportedArchitectureError(f"{arch} file lacks the metadata key {arch}.{key!r}")
        return value

    dim = int(get("embedding_length"))
    n_heads = int(get("attention.head_count"))
    head_dim = int(get("attention.key_length", dim // n_heads))
    vocab = metadata.get(f"{arch}.vocab_size", len(metadata.get("tokenizer.ggml.tokens", ())))
    scaling = metadata.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise UnsupportedArchitectureError(f"RoPE scaling {scaling!r} is not supported (none, linear)")
    n_layers = int(get("block_count"))
    # llama.cpp: gemma3 27B (62 layers) scales queries by 1/sqrt(dim / n_heads), the others by 1/sqrt(head_dim)
    query_dim = dim // n_heads if arch == "gemma3" and n_layers == 62 else head_dim
    return ModelArgs(
        arch=arch,
        n_layers=n_layers,
        dim=dim,
        n_heads=n_heads,
        n_kv_heads=int(get("attention.head_count_kv", n_heads)),
        head_dim=head_dim,
        value_dim=int(get("attention.value_length", head_dim)),
        ffn_dim=int(get("feed_forward_length")),
        vocab_size=int(vocab),
        norm_eps=float(get("attention.layer_norm_rms_epsilon")),
        context_length=int(get("context_length")),
        rope_base=float(get("rope.freq_base", 10000.0)),
        rope_dim=int(get("rope.dimension_count", head_dim)),
        rope_scale=float(get("rope.scaling.factor", 1.0)) if scaling == "linear" else 1.0,
        attn_scale=1.0 / math.sqrt(query_dim),
        sliding_window=int(get("attention.sliding_window", 0)) if profile.global_every else 0,
        qkv_bias="blk.0.attn_q.bias" in names,
        tied_output="output.weight" not in names,
        has_rope_freqs="rope_freqs.weight" in names,
        profile=profile,
    )
