"""Paged KV cache: prefix hits (full and copied partial blocks), refcounts and LRU eviction,
packed-batch layout, flex_attention masks against dense references and SDPA, memory estimates."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention

from phfe.inference import kv_cache
from phfe.inference.kv_cache import (
    CacheFullError,
    KVCacheManager,
    blocks_for_budget,
    estimate_kv_cache_memory,
)

LAYERS, HEADS, DIM = 2, 2, 8


def make(num_blocks: int = 64, block_size: int = 4, **kwargs) -> KVCacheManager:
    return KVCacheManager(num_blocks, block_size, LAYERS, HEADS, DIM, **kwargs)


def prefix_code(tokens: tuple[int, ...], layer: int, head: int) -> float:
    """The value a correct cache holds for the last token of ``tokens``: a function of the whole
    prefix, so KV reused from another prompt shows up as a mismatch (exact in float32)."""
    code = 0
    for t in tokens:
        code = (code * 31 + t + 1) % 1_000_003
    return code + 0.25 * layer + 0.125 * head


def compute(m: KVCacheManager, seq_ids: list, tokens: dict, commit: bool = True) -> None:
    """Stand-in for the forward pass: write every new token's KV through the slot mapping."""
    slots = m.get_slot_mapping(seq_ids)
    seq_index, positions = m.query_layout(seq_ids)
    assert len(slots) == len(seq_index) == len(positions)
    prefixes = [tuple(tokens[seq_ids[s]][: p + 1]) for s, p in zip(seq_index.tolist(), positions.tolist(), strict=True)]
    for layer in range(LAYERS):
        k = torch.tensor([[[prefix_code(pre, layer, h)] * DIM for pre in prefixes] for h in range(HEADS)])[None]
        m.update_kv_cache(layer, k, -k, slots)
    if commit:
        for s in seq_ids:
            m.commit(s)


def assert_kv(m: KVCacheManager, seq_id, tokens) -> None:
    """Every position of the sequence, cached or computed, holds its own prefix's KV."""
    table, bs = m.block_table(seq_id), m.block_size
    assert len(table) == -(-len(tokens) // bs) and 0 not in table
    for layer in range(LAYERS):
        k, v = m.get_kv_cache(layer)
        for p in range(len(tokens)):
            slot = table[p // bs] * bs + p % bs
            for h in range(HEADS):
                want = prefix_code(tuple(tokens[: p + 1]), layer, h)
                assert k[0, h, slot, 0].item() == want and v[0, h, slot, -1].item() == -want, (seq_id, p)


# ---------------------------------------------------------------------------------------- hits
def test_shared_prefix_hits_full_blocks_and_copies_the_partial_block():
    m = make(block_size=4)
    a = list(range(100, 110))  # 2.5 blocks
    b = a + [7, 8, 9]
    assert m.allocate_sequence("a", a) == ([1, 2, 3], 0)
    compute(m, ["a"], {"a": a})
    new, hits = m.allocate_sequence("b", b)
    assert hits == 10 == m.num_cached_tokens("b")
    assert m.block_table("b")[:2] == m.block_table("a")[:2]  # two full blocks shared
    assert m.block_table("b")[2:] == new and m.block_table("a")[2] not in new  # half a block copied
    src, dst = m.block_table("a")[2] * 4, new[0] * 4
    assert torch.equal(m.kv[:, :, :, dst : dst + 2], m.kv[:, :, :, src : src + 2])
    assert m.get_slot_mapping(["b"]).tolist() == [dst + 2, dst + 3, new[1] * 4]
    compute(m, ["b"], {"b": b})
    # Default cap: at least one token computed; explicit caps at token granularity.
    assert m.allocate_sequence("a2", a)[1] == 9
    assert m.allocate_sequence("c", a, max_cached=5)[1] == 5
    assert m.allocate_sequence("d", a, max_cached=0)[1] == 0
    assert m.allocate_sequence("e", a[:3] + [1, 2])[1] == 3  # mid-block divergence inside block 0
    tokens = {"a": a, "b": b, "a2": a, "c": a, "d": a, "e": a[:3] + [1, 2]}
    compute(m, ["a2", "c", "d", "e"], tokens)
    for s, t in tokens.items():
        assert_kv(m, s, t)
    assert m.stats["hit_tokens"] == 10 + 9 + 5 + 0 + 3
    assert m.cache_hit_rate == pytest.approx(27 / sum(map(len, tokens.values())))


def test_prefix_caching_off_never_hits():
    m = make(prefix_caching=False)
    a = list(range(20))
    m.allocate_sequence("a", a)
    compute(m, ["a"], {"a": a})
    assert m.allocate_sequence("b", a)[1] == 0
    m.free_sequence("a")
    m.free_sequence("b")
    assert m.allocate_sequence("c", a)[1] == 0
    assert m.stats["cached_blocks"] == 0 and m.cache_hit_rate == 0.0
    m.free_sequence("c")
    assert m.num_free_blocks == 63 and m.num_used_blocks == 0


def test_hash_collision_never_returns_another_prompts_kv(monkeypatch):
    monkeypatch.setattr(kv_cache, "_block_hash", lambda parent, tokens: b"same" * 4)
    m = make(block_size=4)
    x, y = [1, 2, 3, 4], [5, 6, 7, 8]
    tokens = {"a": x + y + [9], "b": [1, 2, 3, 0] + y + [9], "c": x + x + [9], "d": [0, 0, 0, 0] + y}
    m.allocate_sequence("a", tokens["a"])
    compute(m, ["a"], tokens)
    assert m.allocate_sequence("b", tokens["b"])[1] == 3  # hash says block 0, tokens differ: copy 3 only
    assert m.allocate_sequence("c", tokens["c"])[1] == 4  # block 1 collides with block 0: parent differs
    assert m.allocate_sequence("d", tokens["d"])[1] == 0
    compute(m, ["b", "c", "d"], tokens)
    for s, t in tokens.items():
        assert_kv(m, s, t)


def test_uncommitted_blocks_are_never_hit_and_same_step_duplicates_are_not_registered():
    m = make(block_size=4)
    a = list(range(50, 62))
    tokens = {"a": a, "b": a}
    m.allocate_sequence("a", a)
    assert m.allocate_sequence("b", a)[1] == 0  # same new prefix in the same step
    assert set(m.block_table("a")).isdisjoint(m.block_table("b"))
    compute(m, ["a", "b"], tokens)
    assert m.stats["cached_blocks"] == 3  # a's blocks only; b's duplicates stay private
    a_blocks = m.block_table("a")
    m.free_sequence("b")
    m.free_sequence("a")
    assert m.stats["cached_blocks"] == 3 and m.num_free_blocks == 63
    new, hits = m.allocate_sequence("c", a)
    assert hits == 11 and m.block_table("c")[:2] == a_blocks[:2]
    compute(m, ["c"], {"c": a})
    assert_kv(m, "c", a)


def test_errors():
    m = make(num_blocks=5, block_size=4)  # capacity 4 blocks = 16 tokens
    m.allocate_sequence("a", [1, 2])
    with pytest.raises(ValueError, match="already allocated"):
        m.allocate_sequence("a", [3])
    with pytest.raises(ValueError, match="no tokens"):
        m.allocate_sequence("z", [])
    with pytest.raises(CacheFullError, match="capacity of 4 blocks"):
        m.allocate_sequence("long", list(range(17)))
    assert issubclass(CacheFullError, RuntimeError)
    with pytest.raises(ValueError, match="q_len"):
        m.build_causal_mask(["a"], q_len=1)


# ----------------------------------------------------------------------- refcounts and eviction
def committed(m: KVCacheManager, tokens: dict, free: bool = True) -> dict:
    """Allocate, compute and commit each sequence in turn (then free it); returns the block tables."""
    tables = {}
    for s, t in tokens.items():
        m.allocate_sequence(s, t)
        compute(m, [s], tokens)
        tables[s] = m.block_table(s)
        if free:
            m.free_sequence(s)
    return tables


def test_lru_eviction_frees_tails_first():
    m = make(num_blocks=7, block_size=4)  # 6 blocks
    seqs = {s: [base + i for i in range(8)] for s, base in (("a", 100), ("b", 200), ("c", 300))}
    committed(m, seqs)
    assert m.num_free_blocks == 6 and m.stats["cached_blocks"] == 6
    m.allocate_sequence("d", list(range(4)))  # evicts a's tail block, the least recently used
    assert m.stats["evictions"] == 1
    m.free_sequence("d")
    assert m.allocate_sequence("a", seqs["a"], max_cached=8)[1] == 4  # a's head block survived
    assert m.allocate_sequence("b", seqs["b"], max_cached=8)[1] == 8
    assert m.allocate_sequence("c", seqs["c"], max_cached=8)[1] == 8


def test_hits_are_touched_before_new_blocks_are_taken():
    m = make(num_blocks=7, block_size=4)
    seqs = {s: [base + i for i in range(8)] for s, base in (("a", 100), ("b", 200), ("c", 300))}
    tables = committed(m, seqs)  # LRU order: a's blocks first
    s = seqs["a"] + [1, 2, 3, 4]  # hits a's two blocks and needs one more
    new, hits = m.allocate_sequence("s", s)
    assert hits == 8 and m.block_table("s")[:2] == tables["a"] and new == [tables["b"][1]]
    compute(m, ["s"], {"s": s})
    assert_kv(m, "s", s)
    m.free_sequence("s")  # a's blocks are now the most recently used
    m.allocate_sequence("x", list(range(8)))  # evicts b's head and c's tail, not a's blocks
    m.free_sequence("x")
    assert m.allocate_sequence("b", seqs["b"], max_cached=8)[1] == 0
    assert m.allocate_sequence("a", seqs["a"], max_cached=8)[1] == 8


def test_evicting_a_block_drops_its_cached_descendants():
    m = make(num_blocks=4, block_size=4)  # 3 blocks
    a = list(range(10))
    tables = committed(m, {"a": a})
    # Tail-first freeing keeps parents behind their children in the LRU order; force the other
    # order to check that a reused parent id can never lead to its old children.
    m._evictable.move_to_end(tables["a"][0], last=False)
    x = [50, 51, 52, 53, 60]
    committed(m, {"x": x}, free=False)
    assert m.block_table("x")[0] == tables["a"][0]
    assert m.stats["evictions"] == 3 and m.stats["cached_blocks"] == 2
    m.free_sequence("x")
    y = x[:4] + a[4:9] + [99]
    assert m.allocate_sequence("y", y)[1] == 4  # x's head only: a's old second block is gone
    compute(m, ["y"], {"y": y})
    assert_kv(m, "y", y)


def snapshot(m: KVCacheManager, live: list) -> tuple:
    return (
        {s: (m.block_table(s), m.num_cached_tokens(s), m.sequence_length(s)) for s in live},
        m.num_free_blocks,
        m.num_used_blocks,
        m.stats,
        [(b.ref_count, b.cached, b.hash, b.tokens) for b in m.blocks],
        list(m._evictable),
        list(m._free),
    )


def test_cache_full_leaves_the_manager_unchanged():
    m = make(num_blocks=9, block_size=4)  # 8 blocks
    shared = list(range(40, 48))
    committed(m, {"p": shared + [1, 2], "q": [7] * 8})  # 3 + 2 cached blocks
    m.allocate_sequence("live", list(range(12)))  # 3 blocks in use
    before = snapshot(m, ["live"])
    with pytest.raises(CacheFullError, match=r"needs 5 new blocks but only 3 are free or evictable") as err:
        m.allocate_sequence("big", shared + list(range(200, 218)))  # hits 2 shared blocks, needs 5 more
    assert "capacity 8 blocks" in str(err.value)
    assert snapshot(m, ["live"]) == before
    with pytest.raises(KeyError):
        m.block_table("big")
    # The same request fits once the live sequence is gone; the hits were not lost.
    m.free_sequence("live")
    assert m.allocate_sequence("big", shared + list(range(200, 218)))[1] == 8
    m.free_sequence("big")
    assert m.num_free_blocks == 8 and m.num_used_blocks == 0


def test_random_workload_under_eviction_pressure():
    rng = random.Random(0)
    m = make(num_blocks=24, block_size=4)
    stems = [[rng.randrange(50) for _ in range(rng.randrange(3, 14))] for _ in range(4)]
    live, tokens, n = [], {}, 0
    for _ in range(60):
        batch = []
        for _ in range(rng.randrange(1, 4)):
            seq = rng.choice(stems)[: rng.randrange(1, 14)] + [rng.randrange(50) for _ in range(rng.randrange(0, 6))]
            n += 1
            while True:
                try:
                    m.allocate_sequence(n, seq, max_cached=rng.choice([None, len(seq), rng.randrange(len(seq))]))
                    break
                except CacheFullError:
                    m.free_sequence(live.pop(0))
            live.append(n)
            batch.append(n)
            tokens[n] = seq
        compute(m, batch, tokens)
        for s in live:
            assert_kv(m, s, tokens[s])
        while len(live) > 2 and rng.random() < 0.5:
            m.free_sequence(live.pop(rng.randrange(len(live))))
        used = {b for s in live for b in m.block_table(s)}
        assert m.num_used_blocks == len(used) and m.num_free_blocks == 23 - len(used)
    stats = m.stats
    assert stats["evictions"] > 0 and stats["hit_tokens"] > 0 and stats["peak_blocks_used"] <= 23
    assert stats["computed_tokens"] + stats["hit_tokens"] == stats["tokens_requested"]


# ---------------------------------------------------------------------------- packed layout
def test_slot_mapping_and_query_layout_agree_with_block_tables():
    m = make(block_size=4)
    committed(m, {"p": list(range(30, 41))}, free=False)
    seqs = {"a": list(range(30, 37)) + [1], "b": [5, 6], "c": list(range(30, 41)) + [9] * 6}
    for s, t in seqs.items():
        m.allocate_sequence(s, t)
    ids = ["c", "a", "b"]
    slots = m.get_slot_mapping(ids)
    seq_index, positions = m.query_layout(ids)
    expected = [(i, p) for i, s in enumerate(ids) for p in range(m.num_cached_tokens(s), len(seqs[s]))]
    assert list(zip(seq_index.tolist(), positions.tolist(), strict=True)) == expected
    assert slots.dtype == seq_index.dtype == positions.dtype == torch.int64
    for (i, p), slot in zip(expected, slots.tolist(), strict=True):
        assert slot == m.block_table(ids[i])[p // 4] * 4 + p % 4
    assert len(set(slots.tolist())) == len(slots) and min(slots.tolist()) >= 4  # distinct, never the null block
    k = torch.arange(len(slots), dtype=torch.float32).repeat(HEADS, DIM, 1).transpose(1, 2)[None]
    m.update_kv_cache(1, k, k + 0.5, slots)
    kc, vc = m.get_kv_cache(1)
    assert kc.shape == (1, HEADS, m.num_slots, DIM)
    assert torch.equal(kc[0, :, slots], k[0]) and torch.equal(vc[0, :, slots], k[0] + 0.5)


# ---------------------------------------------------------------------------------- masks
def random_batch(rng: random.Random, block_size: int, prefix_caching: bool = True):
    """A committed prompt set, then a batch of sequences sharing prefixes with it and each other."""
    m = make(num_blocks=128, block_size=block_size, prefix_caching=prefix_caching)
    stems = [[rng.randrange(20) for _ in range(rng.randrange(block_size, 4 * block_size))] for _ in range(2)]
    committed(m, {f"p{i}": s for i, s in enumerate(stems)}, free=rng.random() < 0.5)
    ids, tokens = [], {}
    for i in range(rng.randrange(1, 5)):
        seq = rng.choice(stems)[: rng.randrange(1, 4 * block_size)] + [
            rng.randrange(20) for _ in range(rng.randrange(4))
        ]
        m.allocate_sequence(i, seq, max_cached=rng.choice([None, rng.randrange(len(seq))]))
        ids.append(i)
        tokens[i] = seq
    return m, ids, tokens


def reference_mask(m: KVCacheManager, ids: list, q_len: int, window: int) -> torch.Tensor:
    dense = torch.zeros(q_len, m.num_slots, dtype=torch.bool)
    seq_index, positions = m.query_layout(ids)
    bs = m.block_size
    for q, (s, p) in enumerate(zip(seq_index.tolist(), positions.tolist(), strict=True)):
        table = m.block_table(ids[s])
        for j in range(p + 1):
            if window == 0 or j > p - window:
                dense[q, table[j // bs] * bs + j % bs] = True
    return dense


def blocks_dense(num: torch.Tensor, indices: torch.Tensor, n_cols: int) -> torch.Tensor:
    dense = torch.zeros(indices.shape[-2], n_cols, dtype=torch.bool)
    for row in range(indices.shape[-2]):
        dense[row, indices[0, 0, row, : num[0, 0, row]].long()] = True
    return dense


def effective_mask(mask, q_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask_mod alone, what a block-sparse kernel computes: full blocks | partial blocks & mask_mod)."""
    q_block, kv_block = mask.BLOCK_SIZE
    n_kv = mask.seq_lengths[1]
    q_idx, kv_idx = torch.arange(q_len)[:, None], torch.arange(n_kv)[None, :]
    mod = mask.mask_mod(torch.tensor(0), torch.tensor(0), q_idx, kv_idx)
    partial = blocks_dense(mask.kv_num_blocks, mask.kv_indices, n_kv // kv_block)
    full = blocks_dense(mask.full_kv_num_blocks, mask.full_kv_indices, n_kv // kv_block)
    assert not (partial & full).any()

    def expand(b: torch.Tensor) -> torch.Tensor:
        return b.repeat_interleave(q_block, 0)[:q_len].repeat_interleave(kv_block, 1)

    return mod, expand(full) | (expand(partial) & mod)


@pytest.mark.parametrize("block_size", [4, 8, 16])
def test_block_mask_matches_dense_reference(block_size):
    rng = random.Random(block_size)
    for trial in range(8):
        m, ids, _ = random_batch(rng, block_size, prefix_caching=trial != 7)
        n_q = len(m.get_slot_mapping(ids))
        for window in (0, rng.randrange(1, 3 * block_size)):
            for q_block, pad in ((rng.choice([4, 8, 16, 128]), 0), (8, rng.randrange(1, 9))):
                mask = m.build_causal_mask(ids, sliding_window=window, q_len=n_q + pad, q_block_size=q_block)
                assert (q_block, block_size) == mask.BLOCK_SIZE and mask.seq_lengths == (n_q + pad, m.num_slots)
                mod, effective = effective_mask(mask, n_q + pad)
                ref = reference_mask(m, ids, n_q + pad, window)
                assert torch.equal(mod, ref) and torch.equal(effective, ref)
                # Tight: every listed kv block holds a visible slot for some query of its q block.
                n_qb = -(-(n_q + pad) // q_block)
                padded = F.pad(ref, (0, 0, 0, n_qb * q_block - n_q - pad))
                needed = padded.view(n_qb, q_block, -1, block_size).any(3).any(1)
                assert torch.equal(mask.to_dense()[0, 0].bool(), needed)


def test_shared_prefix_blocks_are_visible_to_every_sharer_and_full_blocks_are_used():
    m = make(num_blocks=16, block_size=4)
    stem = list(range(16))
    committed(m, {"p": stem})
    tokens = {"a": stem + [1, 2, 3, 4], "b": stem[:14] + [5] * 6}
    for s, t in tokens.items():
        m.allocate_sequence(s, t)
    assert m.block_table("a")[:3] == m.block_table("b")[:3]
    mask = m.build_causal_mask(["a", "b"], q_block_size=4)
    mod, effective = effective_mask(mask, 10)
    assert torch.equal(effective, reference_mask(m, ["a", "b"], 10, 0))
    assert mask.full_kv_num_blocks.sum() > 0  # q blocks of a single sequence skip mask_mod on past blocks
    shared_slots = [b * 4 for b in m.block_table("a")[:3]]
    assert effective[:, shared_slots].all()


def gather_reference(m: KVCacheManager, ids, tokens, q: torch.Tensor, layer: int, window: int) -> torch.Tensor:
    """Per-sequence causal SDPA over the K/V gathered through each block table."""
    k_cache, v_cache = m.get_kv_cache(layer)
    seq_index, positions = m.query_layout(ids)
    out = torch.zeros_like(q)
    bs = m.block_size
    for i, s in enumerate(ids):
        rows = (seq_index == i).nonzero().flatten()
        slots = torch.tensor([m.block_table(s)[p // bs] * bs + p % bs for p in range(len(tokens[s]))])
        pos_q, pos_k = positions[rows][:, None], torch.arange(len(tokens[s]))[None, :]
        allowed = (pos_k <= pos_q) & ((pos_k > pos_q - window) if window else True)
        out[:, :, rows] = F.scaled_dot_product_attention(
            q[:, :, rows], k_cache[:, :, slots], v_cache[:, :, slots], attn_mask=allowed, enable_gqa=True
        )
    return out


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize(("block_size", "window"), [(4, 0), (8, 5), (16, 0)])
def test_flex_attention_over_the_cache_matches_per_sequence_sdpa(block_size, window):
    rng = random.Random(10 + block_size)
    torch.manual_seed(block_size)
    m, ids, tokens = random_batch(rng, block_size)
    m.kv.normal_()  # cached and new K/V alike: the mask alone decides what is read
    n_q = len(m.get_slot_mapping(ids))
    q_len = n_q + 3
    mask = m.build_causal_mask(ids, sliding_window=window, q_len=q_len, q_block_size=8)
    q = torch.randn(1, 2 * HEADS, q_len, DIM)
    k, v = m.get_kv_cache(1)
    out = flex_attention(q, k, v, block_mask=mask, enable_gqa=True)
    ref = gather_reference(m, ids, tokens, q[:, :, :n_q], 1, window)
    torch.testing.assert_close(out[:, :, :n_q], ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(out[:, :, n_q:], torch.zeros_like(out[:, :, n_q:]))  # padding queries see nothing


# --------------------------------------------------------------------------------- memory
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize(("num_blocks", "block_size", "layers", "heads", "dim"), [(2, 1, 1, 1, 1), (33, 16, 3, 2, 24)])
def test_memory_estimate_is_exact(dtype, num_blocks, block_size, layers, heads, dim):
    m = KVCacheManager(num_blocks, block_size, layers, heads, dim, dtype=dtype)
    est = estimate_kv_cache_memory(num_blocks, block_size, layers, heads, dim, dtype)
    assert m.kv.numel() * m.kv.element_size() == est["kv_cache_bytes"]
    assert est["kv_cache_gb"] == est["kv_cache_bytes"] / 1e9
    assert est["capacity_tokens"] == (num_blocks - 1) * block_size == (m.num_free_blocks * block_size)
    assert est["bytes_per_token"] * block_size * num_blocks == est["kv_cache_bytes"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_blocks_for_budget_round_trip(dtype):
    geometry = (16, 30, 3, 64)  # block_size, layers, kv heads, head_dim (SmolLM2-135M-like)
    for gb in (0.01, 0.5, 3.7):
        n = blocks_for_budget(gb, *geometry, dtype)
        assert estimate_kv_cache_memory(n, *geometry, dtype)["kv_cache_bytes"] <= gb * 1e9
        assert estimate_kv_cache_memory(n + 1, *geometry, dtype)["kv_cache_bytes"] > gb * 1e9
    with pytest.raises(ValueError, match="at least 2"):
        blocks_for_budget(1e-6, *geometry, dtype)
