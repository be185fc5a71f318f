"""flex_attention ``BlockMask`` over a paged KV cache: causal (optionally sliding-window) attention of packed
query tokens, each against its own sequence's block table.

The mask_mod reads persistent index buffers (grown on demand, rewritten by each build), so that masks of one
step, e.g. the global and the sliding-window one, share them. For compiled kernels the shapes it reads depend
only on ``q_len`` and on the widest block table so far, and the window is a tensor: one graph per query
length bucket, shared by global and sliding-window layers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.attention.flex_attention import BlockMask

NO_WINDOW = 1 << 30  # the window of global attention: longer than any sequence


def packed_ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``range(starts[i], starts[i] + lengths[i])``: (owner i, value) per element."""
    owner = np.repeat(np.arange(len(lengths)), lengths)
    first = np.cumsum(lengths) - lengths
    return owner, starts[owner] + np.arange(int(lengths.sum())) - first[owner]


class PagedMaskBuilder:
    """Builds the masks of a cache of ``num_blocks`` blocks of ``block_size`` slots (KV block = cache block)."""

    def __init__(self, num_blocks: int, block_size: int, device: torch.device):
        self.num_blocks, self.block_size, self.device = num_blocks, block_size, device
        self._q_seq = torch.zeros(1, dtype=torch.int32, device=device)
        self._q_pos = torch.zeros(1, dtype=torch.int32, device=device)
        self._table = torch.zeros(1, 1, dtype=torch.int32, device=device)
        self._block_logical = torch.zeros(num_blocks, dtype=torch.int32, device=device)

    def build(
        self,
        seq_index: np.ndarray,
        positions: np.ndarray,
        table: np.ndarray,
        counts: np.ndarray,
        hits: np.ndarray,
        sliding_window: int = 0,
        q_len: int | None = None,
        q_block_size: int = 128,
    ) -> BlockMask:
        """The mask of packed queries (sequence row and logical position each) against every slot, given the
        padded block table (one row per sequence), new-token counts and computed prefix lengths."""
        n_q = len(positions)
        q_len = n_q if q_len is None else q_len
        if q_len < max(n_q, 1):
            raise ValueError(f"q_len={q_len} is less than the {n_q} packed query tokens (and must be >= 1)")
        self._fill_buffers(seq_index, positions, table, q_len)
        partial, full = self._kv_blocks(table, counts, hits, q_len, q_block_size, sliding_window)
        q_seq, q_pos, owner_table = self._q_seq[:q_len], self._q_pos[:q_len], self._table[:q_len]
        block_logical, bs = self._block_logical, self.block_size
        window = torch.tensor(sliding_window if sliding_window > 0 else NO_WINDOW, device=self.device)

        def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
            block = kv_idx // bs
            logical_block = block_logical[block]
            position = logical_block * bs + kv_idx % bs
            query = q_pos[q_idx]
            own = owner_table[q_seq[q_idx], logical_block] == block
            return own & (position <= query) & (position > query - window)

        return BlockMask.from_kv_blocks(
            *partial,
            *full,
            BLOCK_SIZE=(q_block_size, bs),
            mask_mod=mask_mod,
            seq_lengths=(q_len, self.num_blocks * bs),
            compute_q_blocks=False,
        )

    def _fill_buffers(self, seq_index: np.ndarray, positions: np.ndarray, table: np.ndarray, q_len: int) -> None:
        """Per query: sequence row and position (-1 for padding); per sequence row: its block table;
        per physical block: its logical index in the tables that hold it (a shared prefix block has the
        same index in all of them; blocks in none get 0, which never matches)."""
        n_q, (n_seqs, width) = len(positions), table.shape
        if len(self._q_seq) < q_len:
            size = 1 << (q_len - 1).bit_length()
            self._q_seq, self._q_pos = (torch.zeros(size, dtype=torch.int32, device=self.device) for _ in range(2))
        if self._table.shape[0] < q_len or self._table.shape[1] < width:  # a row per query at most
            rows, cols = max(q_len, self._table.shape[0]), max(width, self._table.shape[1])
            shape = (1 << (rows - 1).bit_length(), 1 << (cols - 1).bit_length())
            self._table = torch.zeros(shape, dtype=torch.int32, device=self.device)
        pad = q_len - n_q
        self._q_seq[:q_len] = torch.from_numpy(np.pad(seq_index, (0, pad)).astype(np.int32))
        self._q_pos[:q_len] = torch.from_numpy(np.pad(positions, (0, pad), constant_values=-1).astype(np.int32))
        self._table[:n_seqs] = 0
        self._table[:n_seqs, :width] = torch.from_numpy(table.astype(np.int32))
        logical = np.zeros(self.num_blocks, dtype=np.int32)
        rows, cols = np.nonzero(table)
        logical[table[rows, cols]] = cols
        self._block_logical.copy_(torch.from_numpy(logical))

    def _kv_blocks(
        self, table: np.ndarray, counts: np.ndarray, hits: np.ndarray, q_len: int, q_block: int, window: int
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """(kv_num_blocks, kv_indices) of the partial and of the full blocks, per q block.

        Each q block is cut into segments, one per sequence it holds; a segment needs its sequence's
        logical blocks from the window start of its first query to the block of its last query.
        A kv block is full (mask_mod skipped) only in a q block held entirely by one sequence, when
        every query of the block sees all of its slots; every other needed block is partial."""
        bs, n_qb = self.block_size, -(-q_len // q_block)
        offsets = np.cumsum(counts) - counts
        first_qb = offsets // q_block
        n_segments = np.where(counts > 0, (offsets + counts - 1) // q_block - first_qb + 1, 0)
        seg_seq, seg_qb = packed_ranges(first_qb, n_segments)
        row0 = np.maximum(offsets[seg_seq], seg_qb * q_block)
        row1 = np.minimum(offsets[seg_seq] + counts[seg_seq], (seg_qb + 1) * q_block)
        pmin = hits[seg_seq] + row0 - offsets[seg_seq]
        pmax = pmin + row1 - row0 - 1
        whole = (row0 == seg_qb * q_block) & (row1 == np.minimum((seg_qb + 1) * q_block, q_len))
        lo = np.maximum(pmin - window + 1, 0) // bs if window > 0 else np.zeros_like(pmin)
        seg, logical = packed_ranges(lo, pmax // bs - lo + 1)
        physical = table[seg_seq[seg], logical]
        full = whole[seg] & ((logical + 1) * bs - 1 <= pmin[seg])
        if window > 0:
            full &= logical * bs > pmax[seg] - window
        # One entry per (q block, physical block): a block shared by two segments of a q block is partial.
        keys, first = np.unique(seg_qb[seg] * self.num_blocks + physical, return_index=True)
        full = full[first]

        def ordered(keys: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            rows, cols = keys // self.num_blocks, keys % self.num_blocks
            num = np.bincount(rows, minlength=n_qb)
            rank = np.arange(len(keys)) - (np.cumsum(num) - num)[rows]
            compact = np.zeros((n_qb, max(int(num.max(initial=0)), 1)), dtype=np.int32)
            compact[rows, rank] = cols
            indices = torch.zeros(1, 1, n_qb, self.num_blocks, dtype=torch.int32, device=self.device)
            indices[0, 0, :, : compact.shape[1]] = torch.from_numpy(compact)
            return torch.from_numpy(num.astype(np.int32)).to(self.device)[None, None], indices

        return ordered(keys[~full]), ordered(keys[full])
