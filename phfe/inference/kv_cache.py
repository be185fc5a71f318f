"""Paged KV cache with token-granular prefix caching (its flex_attention masks: ``block_mask.py``).

Storage: one tensor ``kv`` of shape ``(num_layers, 2, num_heads, num_blocks * block_size, head_dim)``
(K at ``kv[layer, 0]``, V at ``kv[layer, 1]``; ``num_heads`` is the number of KV heads). Physical slot
``block * block_size + offset`` holds logical position ``i * block_size + offset`` of every sequence
whose block table has ``block`` at index ``i``. Block 0 is the null block: never allocated, padding
entries point at it, so the capacity is ``(num_blocks - 1) * block_size`` tokens.

Prefix caching: committed full blocks are indexed by a hash chain ``H(parent hash, block tokens)``;
a hit also checks the block's tokens and its parent block, so a hash collision never returns
another prompt's KV. A shared prefix that ends mid-block is reused by copying the KV of its first
``m`` tokens from a committed block with the same parent into the sequence's fresh block.
Unreferenced cached blocks stay until evicted, least recently used first; evicting a block also
drops its cached descendants (their prefix is gone).

One step of the engine: ``allocate_sequence`` a few sequences, one forward pass over their packed
new tokens (``get_slot_mapping``, ``query_layout``, ``build_causal_mask``; in every layer
``update_kv_cache`` then attention over ``get_kv_cache``), ``commit`` them, later ``free_sequence``.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.attention.flex_attention import BlockMask

from phfe.inference.block_mask import PagedMaskBuilder, packed_ranges

NULL_BLOCK = 0
_ROOT_HASH = b""


class CacheFullError(RuntimeError):
    """Not enough free blocks for a sequence, even after evicting every unreferenced cached block."""


def _block_hash(parent_hash: bytes, token_bytes: bytes) -> bytes:
    """One link of the hash chain: H(parent hash, this block's tokens as int64 bytes)."""
    return hashlib.blake2b(parent_hash + token_bytes, digest_size=16).digest()


def _kv_shape(num_blocks: int, block_size: int, num_layers: int, num_heads: int, head_dim: int) -> tuple[int, ...]:
    return (num_layers, 2, num_heads, num_blocks * block_size, head_dim)


def estimate_kv_cache_memory(
    num_blocks: int, block_size: int, num_layers: int, num_heads: int, head_dim: int, dtype: torch.dtype = torch.float32
) -> dict[str, float | int]:
    """Exactly what ``KVCacheManager`` allocates for this geometry (GB = 1e9 bytes)."""
    element = torch.empty((), dtype=dtype).element_size()
    kv_bytes = math.prod(_kv_shape(num_blocks, block_size, num_layers, num_heads, head_dim)) * element
    bytes_per_token = num_layers * 2 * num_heads * head_dim * element
    return {
        "kv_cache_bytes": kv_bytes,
        "kv_cache_gb": kv_bytes / 1e9,
        "bytes_per_token": bytes_per_token,
        "bytes_per_block": bytes_per_token * block_size,
        "capacity_tokens": (num_blocks - 1) * block_size,
        "num_blocks": num_blocks,
        "block_size": block_size,
    }


def blocks_for_budget(
    memory_gb: float,
    block_size: int,
    num_layers: int,
    num_heads: int,
    head_dim: int,
    dtype: torch.dtype = torch.float32,
) -> int:
    """The largest ``num_blocks`` whose KV cache fits in ``memory_gb`` (1e9 bytes) GB."""
    per_block = estimate_kv_cache_memory(1, block_size, num_layers, num_heads, head_dim, dtype)["kv_cache_bytes"]
    num_blocks = int(memory_gb * 1e9) // per_block
    if num_blocks < 2:
        raise ValueError(f"{memory_gb} GB holds {num_blocks} blocks of {per_block} bytes; need at least 2")
    return num_blocks


@dataclass
class Block:
    """Metadata of one physical block."""

    block_id: int
    ref_count: int = 0
    hash: bytes | None = None  # key in the full-block hash index, if registered there
    tokens: tuple[int, ...] = ()  # the tokens whose KV it holds (set at commit)
    parent: int = NULL_BLOCK  # the previous block of its sequence (NULL_BLOCK for the first)
    computed: bool = False  # KV written and committed
    cached: bool = False  # in the prefix cache: may be hit or copied by later sequences


@dataclass
class _Sequence:
    tokens: tuple[int, ...]
    blocks: list[int]
    hits: int  # leading tokens served from the cache
    computed: int  # leading tokens whose KV is in the cache (or served from it); the rest is to compute


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class KVCacheManager:
    """Paged KV cache for packed-batch (batch dim 1) forward passes, with prefix caching."""

    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        num_layers: int,
        num_heads: int,
        head_dim: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        prefix_caching: bool = True,
    ):
        if num_blocks < 2 or block_size < 1:
            raise ValueError(
                f"need num_blocks >= 2 (block 0 is reserved) and block_size >= 1, got {num_blocks}, {block_size}"
            )
        self.num_blocks, self.block_size, self.num_layers = num_blocks, block_size, num_layers
        self.num_heads, self.head_dim, self.device, self.dtype = num_heads, head_dim, torch.device(device), dtype
        self.prefix_caching = prefix_caching
        self.kv = torch.zeros(
            _kv_shape(num_blocks, block_size, num_layers, num_heads, head_dim), dtype=dtype, device=device
        )
        self.blocks = [Block(i) for i in range(num_blocks)]
        self._free: deque[int] = deque(range(1, num_blocks))  # unreferenced, holding nothing reusable
        self._evictable: OrderedDict[int, None] = OrderedDict()  # unreferenced cached blocks, LRU first
        self._hash_index: dict[bytes, int] = {}
        self._children: dict[int, dict[int, None]] = {}  # parent block -> its cached child blocks
        self._seqs: dict[Hashable, _Sequence] = {}
        self._counts = dict.fromkeys(("tokens_requested", "hit_tokens", "peak_blocks_used", "evictions"), 0)
        self._masks = PagedMaskBuilder(num_blocks, block_size, self.device)

    # ------------------------------------------------------------------ allocation and prefix cache
    @property
    def num_slots(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def num_free_blocks(self) -> int:
        """Blocks an allocation can take: free plus evictable (unreferenced cached)."""
        return len(self._free) + len(self._evictable)

    @property
    def num_used_blocks(self) -> int:
        """Blocks referenced by live sequences."""
        return self.num_blocks - 1 - self.num_free_blocks

    def allocate_sequence(
        self, seq_id: Hashable, tokens: Sequence[int], max_cached: int | None = None
    ) -> tuple[list[int], int]:
        """Reserve blocks for ``tokens``, reusing the longest committed cached prefix (at most
        ``max_cached`` tokens, default ``len(tokens) - 1``). Returns (new block ids, hit tokens).
        Raises ``CacheFullError`` (state unchanged) when the blocks cannot be found."""
        if seq_id in self._seqs:
            raise ValueError(f"sequence {seq_id!r} is already allocated")
        tokens = tuple(int(t) for t in tokens)
        if not tokens:
            raise ValueError(f"sequence {seq_id!r} has no tokens")
        bs = self.block_size
        cap = len(tokens) - 1 if max_cached is None else max(0, min(max_cached, len(tokens)))
        n_total = -(-len(tokens) // bs)
        if n_total > self.num_blocks - 1:
            raise CacheFullError(
                f"sequence {seq_id!r} of {len(tokens)} tokens needs {n_total} blocks, more than the cache's "
                f"capacity of {self.num_blocks - 1} blocks ({(self.num_blocks - 1) * bs} tokens)"
            )
        hit_blocks, source, m = self._match(tokens, cap) if self.prefix_caching else ([], None, 0)
        n_new = n_total - len(hit_blocks)
        pinned = [b for b in [*hit_blocks, source] if b is not None and self.blocks[b].ref_count == 0]
        if n_new > self.num_free_blocks - len(pinned):
            raise CacheFullError(
                f"sequence {seq_id!r} needs {n_new} new blocks but only {self.num_free_blocks - len(pinned)} are "
                f"free or evictable ({self.num_used_blocks} in use; capacity {self.num_blocks - 1} blocks of {bs})"
            )
        # Reference the hits (and pin the copy source) before taking new blocks, so that taking them
        # cannot evict what was just matched.
        for b in [*hit_blocks, source]:
            if b is not None:
                self._ref(b)
        new_blocks = [self._take_block() for _ in range(n_new)]
        if source is not None:
            src, dst = source * bs, new_blocks[0] * bs
            self.kv[:, :, :, dst : dst + m] = self.kv[:, :, :, src : src + m]
            self._unref(source)
        hits = len(hit_blocks) * bs + m
        self._seqs[seq_id] = _Sequence(tokens, hit_blocks + new_blocks, hits, hits)
        self._counts["tokens_requested"] += len(tokens)
        self._counts["hit_tokens"] += hits
        self._counts["peak_blocks_used"] = max(self._counts["peak_blocks_used"], self.num_used_blocks)
        return new_blocks, hits

    def extend_sequence(self, seq_id: Hashable, tokens: Sequence[int]) -> list[int]:
        """Append ``tokens`` (say, a generated one) to a committed sequence; they are the next to compute.
        Returns the new block ids; raises ``CacheFullError`` (state unchanged) when no block can be found."""
        seq = self._seqs[seq_id]
        extended = seq.tokens + tuple(int(t) for t in tokens)
        n_new = -(-len(extended) // self.block_size) - len(seq.blocks)
        if n_new > self.num_free_blocks:
            raise CacheFullError(
                f"sequence {seq_id!r} needs {n_new} more blocks to reach {len(extended)} tokens but only "
                f"{self.num_free_blocks} are free or evictable (capacity {self.num_blocks - 1} blocks)"
            )
        new_blocks = [self._take_block() for _ in range(n_new)]
        seq.blocks += new_blocks
        seq.computed, seq.tokens = len(seq.tokens), extended
        self._counts["tokens_requested"] += len(extended) - seq.computed
        self._counts["peak_blocks_used"] = max(self._counts["peak_blocks_used"], self.num_used_blocks)
        return new_blocks

    def cached_prefix_length(self, tokens: Sequence[int], max_cached: int | None = None) -> int:
        """How many leading tokens an allocation of ``tokens`` would serve from the cache now (read-only)."""
        tokens = tuple(int(t) for t in tokens)
        cap = len(tokens) - 1 if max_cached is None else max(0, min(max_cached, len(tokens)))
        if not self.prefix_caching or not tokens:
            return 0
        hit_blocks, _, m = self._match(tokens, cap)
        return len(hit_blocks) * self.block_size + m

    def _match(self, tokens: tuple[int, ...], cap: int) -> tuple[list[int], int | None, int]:
        """Read-only lookup: (full blocks hit, copy-source block or None, tokens to copy from it)."""
        bs = self.block_size
        token_bytes = np.asarray(tokens, dtype=np.int64).tobytes()
        hits: list[int] = []
        parent, parent_hash = NULL_BLOCK, _ROOT_HASH
        while (len(hits) + 1) * bs <= cap:
            k = len(hits)
            h = _block_hash(parent_hash, token_bytes[k * bs * 8 : (k + 1) * bs * 8])
            block = self.blocks[self._hash_index.get(h, NULL_BLOCK)]
            if block.block_id == NULL_BLOCK or block.parent != parent or block.tokens != tokens[k * bs : (k + 1) * bs]:
                break  # a miss, or a hash collision: only the tokens and the parent chain are trusted
            hits.append(block.block_id)
            parent, parent_hash = block.block_id, h
        start = len(hits) * bs
        wanted = tokens[start : start + min(bs, cap - start)]
        source, m = None, 0
        for child in self._children.get(parent, ()) if wanted else ():
            n = _common_prefix(self.blocks[child].tokens, wanted)
            if n > m:
                source, m = child, n
        return hits, source, m

    def commit(self, seq_id: Hashable) -> None:
        """The sequence's KV is computed: its new blocks become prefix-cache entries (full blocks in
        the hash index, the partial tail block as a copy source)."""
        seq = self._seqs[seq_id]
        seq.computed = len(seq.tokens)
        bs = self.block_size
        token_bytes = np.asarray(seq.tokens, dtype=np.int64).tobytes()
        parent, parent_hash = NULL_BLOCK, _ROOT_HASH
        for i, block_id in enumerate(seq.blocks):
            block, chunk = self.blocks[block_id], seq.tokens[i * bs : (i + 1) * bs]
            h = _block_hash(parent_hash, token_bytes[i * bs * 8 : (i + 1) * bs * 8]) if len(chunk) == bs else None
            if not block.computed:
                block.computed, block.tokens, block.parent = True, chunk, parent
                if self.prefix_caching:
                    self._register(block, h)
            parent, parent_hash = block_id, h

    def _register(self, block: Block, h: bytes | None) -> None:
        if block.parent != NULL_BLOCK and not self.blocks[block.parent].cached:
            return  # its prefix is not in the cache, so nothing could reach it
        siblings = self._children.setdefault(block.parent, {})
        n = len(block.tokens)
        if any(self.blocks[s].tokens[:n] == block.tokens for s in siblings):
            return  # the same tokens are already cached (e.g. two sequences computed them in one step)
        siblings[block.block_id] = None
        block.cached = True
        if h is not None and h not in self._hash_index:
            block.hash = h
            self._hash_index[h] = block.block_id

    def free_sequence(self, seq_id: Hashable) -> None:
        """Drop the sequence's references, tail block first (head blocks, likelier shared, stay longer)."""
        for block_id in reversed(self._seqs.pop(seq_id).blocks):
            self._unref(block_id)

    def _ref(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self._evictable[block_id]
        block.ref_count += 1

    def _unref(self, block_id: int) -> None:
        block = self.blocks[block_id]
        block.ref_count -= 1
        if block.ref_count == 0:
            if block.cached:
                self._evictable[block_id] = None  # most recently used end
            else:
                self.blocks[block_id] = Block(block_id)
                self._free.append(block_id)

    def _take_block(self) -> int:
        """A fresh block with one reference: a free one, else the least recently used evictable one."""
        if self._free:
            block_id = self._free.popleft()
        else:
            block_id, _ = self._evictable.popitem(last=False)
            self._uncache(block_id)
        self.blocks[block_id] = Block(block_id, ref_count=1)
        return block_id

    def _uncache(self, block_id: int) -> None:
        """Evict a block and its cached descendants from the prefix cache."""
        stack = [block_id]
        while stack:
            block = self.blocks[stack.pop()]
            self._children.get(block.parent, {}).pop(block.block_id, None)
            if block.hash is not None:
                del self._hash_index[block.hash]
            stack.extend(self._children.pop(block.block_id, ()))
            block.cached, block.hash = False, None
            self._counts["evictions"] += 1
            if block.block_id != block_id and block.ref_count == 0:
                del self._evictable[block.block_id]
                self._free.append(block.block_id)

    # ------------------------------------------------------------------ per-sequence views
    def block_table(self, seq_id: Hashable) -> list[int]:
        return list(self._seqs[seq_id].blocks)

    def sequence_length(self, seq_id: Hashable) -> int:
        return len(self._seqs[seq_id].tokens)

    def tokens_to_compute(self, seq_id: Hashable) -> tuple[int, ...]:
        """The sequence's tokens whose KV is not in the cache yet (those a forward pass must compute)."""
        seq = self._seqs[seq_id]
        return seq.tokens[seq.computed :]

    def num_cached_tokens(self, seq_id: Hashable) -> int:
        """Leading tokens served from the cache at allocation."""
        return self._seqs[seq_id].hits

    @property
    def cache_hit_rate(self) -> float:
        """Tokens served from the cache / tokens requested, over all allocations."""
        return self._counts["hit_tokens"] / max(self._counts["tokens_requested"], 1)

    @property
    def stats(self) -> dict[str, float | int]:
        """Tokens requested / served from cache / computed, hit rate, blocks in use now and at peak,
        blocks in the prefix cache, evictions."""
        c = self._counts
        return {
            **c,
            "computed_tokens": c["tokens_requested"] - c["hit_tokens"],
            "hit_rate": self.cache_hit_rate,
            "blocks_used": self.num_used_blocks,
            "cached_blocks": sum(block.cached for block in self.blocks),
        }

    # ------------------------------------------------------------------ packed batch layout
    def _layout(self, seq_ids: Sequence[Hashable]) -> tuple[np.ndarray, ...]:
        """Packed new tokens of ``seq_ids``: (seq index, position, slot) per token, and the padded
        (n_seqs, max_blocks) block table (NULL_BLOCK padding), new-token counts and computed prefix
        lengths per sequence."""
        seqs = [self._seqs[s] for s in seq_ids]
        hits = np.array([s.computed for s in seqs], dtype=np.int64)
        counts = np.array([len(s.tokens) for s in seqs], dtype=np.int64) - hits
        table = np.zeros((len(seqs), max((len(s.blocks) for s in seqs), default=1)), dtype=np.int64)
        for i, s in enumerate(seqs):
            table[i, : len(s.blocks)] = s.blocks
        seq_index, positions = packed_ranges(hits, counts)
        bs = self.block_size
        slots = table[seq_index, positions // bs] * bs + positions % bs
        return seq_index, positions, slots, table, counts, hits

    def get_slot_mapping(self, seq_ids: Sequence[Hashable]) -> torch.Tensor:
        """Physical slots of the tokens to compute (positions computed..len-1 of each sequence, packed in
        ``seq_ids`` order): where ``update_kv_cache`` writes."""
        return torch.from_numpy(self._layout(seq_ids)[2]).to(self.device)

    def query_layout(self, seq_ids: Sequence[Hashable]) -> tuple[torch.Tensor, torch.Tensor]:
        """For the same packed tokens: index into ``seq_ids`` and logical position (for RoPE)."""
        seq_index, positions = self._layout(seq_ids)[:2]
        return torch.from_numpy(seq_index).to(self.device), torch.from_numpy(positions).to(self.device)

    # ------------------------------------------------------------------ KV storage
    def get_kv_cache(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views (1, num_heads, num_slots, head_dim) of the layer's K and V, as flex_attention takes them."""
        return self.kv[layer, 0].unsqueeze(0), self.kv[layer, 1].unsqueeze(0)

    def update_kv_cache(self, layer: int, k: torch.Tensor, v: torch.Tensor, slot_mapping: torch.Tensor) -> None:
        """Write k, v of shape (1, num_heads, n_tokens, head_dim) at the n_tokens ``slot_mapping`` slots."""
        self.kv[layer, 0].index_copy_(1, slot_mapping, k[0].to(self.dtype))
        self.kv[layer, 1].index_copy_(1, slot_mapping, v[0].to(self.dtype))

    # ------------------------------------------------------------------ attention mask
    def build_causal_mask(
        self, seq_ids: Sequence[Hashable], sliding_window: int = 0, q_len: int | None = None, q_block_size: int = 128
    ) -> BlockMask:
        """flex_attention ``BlockMask`` for the packed new tokens of ``seq_ids`` (padded to ``q_len``;
        padding queries see nothing) against all ``num_slots`` slots: a query sees a slot iff it is
        in its own sequence's block table at a logical position <= its own (and > position -
        sliding_window when sliding_window > 0). KV block size = ``block_size``.

        The mask_mod reads persistent buffers of this manager: a mask stays valid until the next
        build for other sequences (masks of one step, e.g. global and sliding-window, share them)."""
        seq_index, positions, _, table, counts, hits = self._layout(seq_ids)
        return self._masks.build(seq_index, positions, table, counts, hits, sliding_window, q_len, q_block_size)
