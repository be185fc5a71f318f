"""One decoder-only transformer for every supported architecture, driven by :class:`ModelArgs`.

Module names mirror GGUF tensor names (``blk.3.attn_q.weight``), so a file's tensors load by name.
Attention is a pluggable function: the default is causal (and sliding-window) attention over the tokens
of one forward pass; the paged engine passes its own, which reads and writes the KV cache.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from phfe.models.config import ModelArgs


class AttentionFn(Protocol):
    """Attend ``q`` (B, H, T, D) over keys/values ``k``, ``v`` (B, KV, T, D) of layer ``layer``."""

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int) -> torch.Tensor: ...


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 (GGUF gemma weights already hold the +1)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * self.weight.float()).to(x.dtype)


class Rotary:
    """Rotary position embedding for one (base, scale): llama.cpp's NORM (adjacent pairs) or NEOX (halves)."""

    def __init__(self, args: ModelArgs, base: float, scale: float, factors: torch.Tensor | None):
        exponents = torch.arange(0, args.rope_dim, 2, dtype=torch.float32) / args.rope_dim
        self.inv_freq = 1.0 / (base**exponents)
        if factors is not None:
            self.inv_freq = self.inv_freq / factors.detach().float().cpu()
        self.scale = scale
        self.dim = args.rope_dim
        self.neox = args.profile.rope_style == "neox"

    def angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of shape (B, 1, T, rope_dim / 2) for integer ``positions`` (B, T)."""
        theta = (positions.float() / self.scale)[..., None] * self.inv_freq.to(positions.device)
        return theta.cos()[:, None], theta.sin()[:, None]

    def apply(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        rot, rest = x[..., : self.dim].float(), x[..., self.dim :]
        if self.neox:
            a, b = rot.chunk(2, dim=-1)
            rotated = torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)
        else:
            a, b = rot.unflatten(-1, (-1, 2)).unbind(-1)
            rotated = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)
        return torch.cat([rotated.to(x.dtype), rest], dim=-1)


class Block(nn.Module):
    """One transformer layer; attribute names are the GGUF tensor names after ``blk.N.``."""

    def __init__(self, args: ModelArgs, layer: int):
        super().__init__()
        self.args, self.layer = args, layer
        p = args.profile
        self.attn_norm = RMSNorm(args.dim, args.norm_eps)
        self.attn_q = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=args.qkv_bias)
        self.attn_k = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=args.qkv_bias)
        self.attn_v = nn.Linear(args.dim, args.n_kv_heads * args.value_dim, bias=args.qkv_bias)
        self.attn_output = nn.Linear(args.n_heads * args.value_dim, args.dim, bias=False)
        if p.qk_norm:
            self.attn_q_norm = RMSNorm(args.head_dim, args.norm_eps)
            self.attn_k_norm = RMSNorm(args.head_dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_gate = nn.Linear(args.dim, args.ffn_dim, bias=False)
        self.ffn_up = nn.Linear(args.dim, args.ffn_dim, bias=False)
        self.ffn_down = nn.Linear(args.ffn_dim, args.dim, bias=False)
        if p.sandwich_norms:
            self.post_attention_norm = RMSNorm(args.dim, args.norm_eps)
            self.post_ffw_norm = RMSNorm(args.dim, args.norm_eps)
        self.activation = F.silu if p.activation == "silu" else lambda x: F.gelu(x, approximate="tanh")

    def attention(self, x: torch.Tensor, rotary: Rotary, angles: tuple, attend: AttentionFn) -> torch.Tensor:
        a = self.args
        batch, length, _ = x.shape
        q = self.attn_q(x).view(batch, length, a.n_heads, a.head_dim)
        k = self.attn_k(x).view(batch, length, a.n_kv_heads, a.head_dim)
        v = self.attn_v(x).view(batch, length, a.n_kv_heads, a.value_dim)
        if a.profile.qk_norm:
            q, k = self.attn_q_norm(q), self.attn_k_norm(k)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        q, k = rotary.apply(q, *angles), rotary.apply(k, *angles)
        out = attend(q, k, v, self.layer)
        return self.attn_output(out.transpose(1, 2).reshape(batch, length, a.n_heads * a.value_dim))

    def forward(self, x: torch.Tensor, rotary: Rotary, angles: tuple, attend: AttentionFn) -> torch.Tensor:
        h = self.attention(self.attn_norm(x), rotary, angles, attend)
        if self.args.profile.sandwich_norms:
            h = self.post_attention_norm(h)
        x = x + h
        normed = self.ffn_norm(x)
        h = self.ffn_down(self.activation(self.ffn_gate(normed)) * self.ffn_up(normed))
        if self.args.profile.sandwich_norms:
            h = self.post_ffw_norm(h)
        return x + h


class CausalAttention:
    """Attention within one forward pass: causal, and within the sliding window on local layers."""

    def __init__(self, args: ModelArgs):
        self.args = args

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int) -> torch.Tensor:
        length = q.shape[-2]
        mask = None
        if not self.args.is_global(layer) and length > self.args.sliding_window:
            distance = torch.arange(length, device=q.device)[:, None] - torch.arange(length, device=q.device)
            mask = (distance >= 0) & (distance < self.args.sliding_window)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, scale=self.args.attn_scale, enable_gqa=True
        )


class Decoder(nn.Module):
    """The model: ``forward(tokens, positions=None, attend=None) -> logits``."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        # an explicit weight skips nn.Embedding's random init (which on the meta device costs a 1 s import)
        self.token_embd = nn.Embedding(args.vocab_size, args.dim, _weight=torch.empty(args.vocab_size, args.dim))
        self.blk = nn.ModuleList(Block(args, layer) for layer in range(args.n_layers))
        self.output_norm = RMSNorm(args.dim, args.norm_eps)
        if not args.tied_output:
            self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        if args.has_rope_freqs:
            self.rope_freqs = nn.Module()
            self.rope_freqs.weight = nn.Parameter(torch.ones(args.rope_dim // 2))

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        attend: AttentionFn | None = None,
        logits_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, vocab) of ``tokens`` (B, T); with ``logits_rows``, only of those token indices
        (B, len(rows), vocab), which spares the output projection for tokens whose prediction is unused."""
        return self.project(self.hidden_states(tokens, positions, attend, logits_rows))

    def hidden_states(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        attend: AttentionFn | None = None,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The final (normed) hidden states (B, T, dim) of ``tokens``, or of the token indices ``rows``."""
        if positions is None:
            positions = torch.arange(tokens.shape[-1], device=tokens.device).expand_as(tokens)
        attend = attend or CausalAttention(self.args)
        x = self.token_embd(tokens)
        if self.args.profile.scale_embeddings:
            x = x * torch.tensor(self.args.dim**0.5, dtype=x.dtype)
        factors = self.rope_freqs.weight if self.args.has_rope_freqs else None
        rotaries: dict[tuple[float, float], tuple[Rotary, tuple]] = {}
        for block in self.blk:
            key = (self.args.layer_rope_base(block.layer), self.args.layer_rope_scale(block.layer))
            if key not in rotaries:
                rotary = Rotary(self.args, *key, factors)
                rotaries[key] = rotary, rotary.angles(positions)
            x = block(x, *rotaries[key], attend)
        if rows is not None:
            x = x[:, rows]
        return self.output_norm(x)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of final hidden states: the output projection (the token embedding when tied)."""
        return F.linear(hidden, self.token_embd.weight if self.args.tied_output else self.output.weight)
