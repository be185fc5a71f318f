"""The decoder's attention for one packed step over the paged KV cache.

Each layer first writes the step's new keys and values into the cache, then attends over the cache. Two
backends compute the same thing:

- ``sdpa``: gathers each sequence's keys and values through its block table into a padded batch and runs
  ``scaled_dot_product_attention`` with a causal (and sliding-window) mask: no compilation, the fast path
  on the CPU (``experiments/bench_engine_options.py``);
- ``flex_compiled``: ``torch.compile``d flex_attention over every physical slot with the manager's
  BlockMask, reading only the blocks a query needs; the packed queries are padded to a power of two (at
  least :data:`MIN_Q_BUCKET`) so that a run compiles once per bucket, not once per step;
- ``flex``: the same flex_attention, eager (it materializes the scores against every slot: tiny shapes only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention

from phfe.inference.kv_cache import KVCacheManager
from phfe.models.config import ModelArgs

BACKENDS = ("sdpa", "flex", "flex_compiled")
MIN_Q_BUCKET = 128  # one flex_attention query block


def q_bucket(n_queries: int) -> int:
    """The padded query length of the compiled kernel: the next power of two, at least MIN_Q_BUCKET."""
    return max(MIN_Q_BUCKET, 1 << (n_queries - 1).bit_length())


@functools.cache
def compiled_flex_attention() -> Callable[..., torch.Tensor]:
    """flex_attention compiled once per process, with static shapes: one graph per query bucket (and per
    growth of the widest block table), so dynamo may keep more graphs than its default of 8."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(flex_attention, dynamic=False)


class PagedAttention:
    """An :class:`~phfe.models.decoder.AttentionFn` for the packed new tokens of ``seq_ids``."""

    def __init__(self, cache: KVCacheManager, seq_ids: Sequence[Hashable], args: ModelArgs, backend: str = "sdpa"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")
        self.cache, self.args, self.backend = cache, args, backend
        self.slots = cache.get_slot_mapping(seq_ids)
        self.seq_index, self.positions = cache.query_layout(seq_ids)
        if backend.startswith("flex"):
            compiled = backend == "flex_compiled"
            n_q = len(self.positions)
            self.q_len = q_bucket(n_q) if compiled else n_q
            self._masks = {False: cache.build_causal_mask(seq_ids, q_len=self.q_len)}
            if args.sliding_window:
                window = args.sliding_window
                self._masks[True] = cache.build_causal_mask(seq_ids, sliding_window=window, q_len=self.q_len)
            self._flex = compiled_flex_attention() if compiled else flex_attention
        else:
            self._prepare_gather(seq_ids)

    def _prepare_gather(self, seq_ids: Sequence[Hashable]) -> None:
        cache, device = self.cache, self.slots.device
        lengths = torch.tensor([cache.sequence_length(s) for s in seq_ids], device=device)
        n_seqs, longest = len(seq_ids), int(lengths.max())
        key_pos = torch.arange(longest, device=device)
        tables = torch.zeros(n_seqs, -(-longest // cache.block_size), dtype=torch.long, device=device)
        for i, seq_id in enumerate(seq_ids):
            table = cache.block_table(seq_id)
            tables[i, : len(table)] = torch.tensor(table, device=device)
        valid = key_pos < lengths[:, None]
        slots = tables[:, key_pos // cache.block_size] * cache.block_size + key_pos % cache.block_size
        self._key_slots = torch.where(valid, slots, 0).flatten()  # padding reads the null block
        # Packed query j sits at (its sequence, its rank among that sequence's new tokens).
        first = torch.zeros(n_seqs + 1, dtype=torch.long, device=device)
        first[1:] = torch.bincount(self.seq_index, minlength=n_seqs).cumsum(0)
        self._rank = torch.arange(len(self.seq_index), device=device) - first[self.seq_index]
        query_pos = torch.zeros(n_seqs, int((first[1:] - first[:-1]).max()), dtype=torch.long, device=device)
        query_pos[self.seq_index, self._rank] = self.positions  # padding queries sit at 0: they see key 0
        causal = (key_pos <= query_pos[..., None]) & valid[:, None, :]
        self._gather_masks = {False: causal[:, None]}
        if self.args.sliding_window:
            window = query_pos[..., None] - key_pos < self.args.sliding_window
            self._gather_masks[True] = (causal & window)[:, None]
        self._shape = (n_seqs, longest)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int) -> torch.Tensor:
        self.cache.update_kv_cache(layer, k, v, self.slots)
        keys, values = self.cache.get_kv_cache(layer)
        local = not self.args.is_global(layer)
        if self.backend != "sdpa":
            n_q = q.shape[2]
            out = self._flex(
                F.pad(q, (0, 0, 0, self.q_len - n_q)),  # padding queries see nothing and are cut off
                keys.to(q.dtype),
                values.to(q.dtype),
                block_mask=self._masks[local],
                scale=self.args.attn_scale,
                enable_gqa=True,
            )
            return out[:, :, :n_q]
        n_seqs, longest = self._shape
        heads = keys.shape[1]
        gathered_k = keys[0].index_select(1, self._key_slots).view(heads, n_seqs, longest, -1).transpose(0, 1)
        gathered_v = values[0].index_select(1, self._key_slots).view(heads, n_seqs, longest, -1).transpose(0, 1)
        mask = self._gather_masks[local]
        queries = q.new_zeros(n_seqs, mask.shape[2], q.shape[1], q.shape[3])
        queries[self.seq_index, self._rank] = q[0].transpose(0, 1)
        out = F.scaled_dot_product_attention(
            queries.transpose(1, 2),
            gathered_k.to(q.dtype),
            gathered_v.to(q.dtype),
            attn_mask=mask,
            scale=self.args.attn_scale,
            enable_gqa=True,
        )
        return out.transpose(1, 2)[self.seq_index, self._rank].transpose(0, 1)[None]
