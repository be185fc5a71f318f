"""The scoring and generation engine: packed forward passes over a paged, prefix-cached KV cache.

Requests are sorted by their tokens so that those sharing a prefix run in order; a step packs as many
requests as fit ``max_batch_tokens`` and the cache, deferring a request whose prefix another request of
the same step is computing right now (it will read that prefix from the cache one step later).
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from phfe.inference.backend import SCORE_CHUNK_ROWS, ScoreResult, ScoringBackend, row_scores, score_result
from phfe.inference.kv_cache import CacheFullError, KVCacheManager, blocks_for_budget
from phfe.inference.paged_attention import PagedAttention
from phfe.models.build import build_model
from phfe.models.decoder import Decoder
from phfe.models.tokenizer import GGUFTokenizer, load_tokenizer


@dataclass
class _Request:
    index: int
    tokens: tuple[int, ...]
    n_context: int  # continuation tokens are tokens[n_context:]
    seq_id: int = -1  # its sequence in the cache, once scheduled


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


class Engine(ScoringBackend):
    """Scores and generates with a PHFE model over a :class:`KVCacheManager`."""

    def __init__(
        self,
        model: Decoder,
        tokenizer: GGUFTokenizer,
        cache: KVCacheManager,
        max_batch_tokens: int = 2048,
        attention: str = "auto",
    ):
        self.model, self.tokenizer, self.cache = model, tokenizer, cache
        self.max_batch_tokens = max_batch_tokens
        # "auto" is gather + SDPA: 1.03-1.5x compiled flex_attention on the CPU (bench_engine_options.py);
        # on CUDA too, until flex_compiled is measured there
        self.attention = "sdpa" if attention == "auto" else attention
        self._seq_ids = itertools.count()
        self._counts = {"requests": 0, "steps": 0, "forward_seconds": 0.0}

    @classmethod
    def from_gguf(
        cls,
        source: str | os.PathLike[str],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        num_blocks: int | None = None,
        memory_gb: float = 1.0,
        block_size: int = 16,
        prefix_caching: bool = True,
        max_batch_tokens: int = 2048,
        attention: str = "auto",
        cache_dtype: torch.dtype | None = None,
    ) -> Engine:
        """Build model, tokenizer and KV cache (``num_blocks`` blocks, else as many as ``memory_gb`` holds)."""
        model = build_model(source, device=device, dtype=dtype)
        a = model.args
        geometry = (block_size, a.n_layers, a.n_kv_heads, max(a.head_dim, a.value_dim))
        cache_dtype = cache_dtype or dtype
        num_blocks = num_blocks or blocks_for_budget(memory_gb, *geometry, dtype=cache_dtype)
        cache = KVCacheManager(num_blocks, *geometry, device=device, dtype=cache_dtype, prefix_caching=prefix_caching)
        return cls(model, load_tokenizer(model.source), cache, max_batch_tokens, attention)

    # ---------------------------------------------------------------- scoring
    def score_tokens(
        self,
        requests: Sequence[tuple[Sequence[int], Sequence[int]]],
        progress: bool = False,
        distribution: bool = False,
    ) -> list[ScoreResult]:
        reqs = [self._request(i, ctx, cont) for i, (ctx, cont) in enumerate(requests)]
        pending = deque(sorted(reqs, key=lambda r: r.tokens))
        results: list[ScoreResult | None] = [None] * len(reqs)
        with tqdm(total=len(reqs), desc="scoring", unit="req", disable=not progress) as bar:
            while pending:
                step = self._schedule(pending)
                for request, result in zip(step, self._score_step(step, distribution), strict=True):
                    results[request.index] = result
                bar.update(len(step))
        self._counts["requests"] += len(reqs)
        return results  # type: ignore[return-value]

    def _request(self, index: int, context: Sequence[int], continuation: Sequence[int]) -> _Request:
        if not context or not continuation:
            raise ValueError(f"request {index}: context and continuation must each hold at least one token")
        tokens = tuple(context) + tuple(continuation)
        limit = self.model.args.context_length
        if len(tokens) > limit:
            raise ValueError(f"request {index} has {len(tokens)} tokens, more than the model's context of {limit}")
        return _Request(index, tokens, len(context))

    def _schedule(self, pending: deque[_Request]) -> list[_Request]:
        """Take the next step's requests from ``pending`` (sorted) and allocate their sequences."""
        step: list[_Request] = []
        deferred: list[_Request] = []
        budget = self.max_batch_tokens
        while pending:
            request = pending[0]
            cap = request.n_context - 1
            hit = self.cache.cached_prefix_length(request.tokens, cap)
            if step and min(_common_prefix(step[-1].tokens, request.tokens), cap) > hit:
                deferred.append(pending.popleft())  # its prefix is being computed by step[-1]
                continue
            if step and len(request.tokens) - hit > budget:
                break
            request.seq_id = next(self._seq_ids)
            try:
                self.cache.allocate_sequence(request.seq_id, request.tokens, max_cached=cap)
            except CacheFullError as exc:
                if step:
                    break
                raise CacheFullError(
                    f"request {request.index} ({len(request.tokens)} tokens) does not fit the KV cache even when "
                    f"it is empty: {exc}; give the engine more blocks"
                ) from None
            budget -= len(request.tokens) - self.cache.num_cached_tokens(request.seq_id)
            step.append(pending.popleft())
        pending.extendleft(reversed(deferred))
        return step

    def _score_step(self, step: list[_Request], distribution: bool) -> list[ScoreResult]:
        seq_ids = [r.seq_id for r in step]
        rows, offset = [], 0
        for r in step:
            start = self.cache.num_cached_tokens(r.seq_id)
            rows.append(torch.arange(r.n_context - 1, len(r.tokens) - 1) - start + offset)
            offset += len(r.tokens) - start
        targets = torch.tensor([t for r in step for t in r.tokens[r.n_context :]], device=self.cache.device)

        def scores(hidden: torch.Tensor) -> torch.Tensor:  # the output projection a chunk of rows at a time
            chunks = zip(hidden.split(SCORE_CHUNK_ROWS), targets.split(SCORE_CHUNK_ROWS), strict=True)
            return torch.cat([row_scores(self.model.project(h), t, distribution) for h, t in chunks]).cpu()

        per_row = self._forward(seq_ids, torch.cat(rows), scores)
        results, row = [], 0
        for r in step:
            n = len(r.tokens) - r.n_context
            results.append(score_result(per_row[row : row + n], distribution))
            row += n
        for seq_id in seq_ids:
            self.cache.commit(seq_id)
            self.cache.free_sequence(seq_id)
        return results

    def _forward(
        self, seq_ids: list[int], rows: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """One packed forward pass over the sequences' tokens still to compute: ``head`` of the final hidden
        states of ``rows``."""
        started = time.perf_counter()
        attend = PagedAttention(self.cache, seq_ids, self.model.args, self.attention)
        tokens = torch.tensor([t for s in seq_ids for t in self.cache.tokens_to_compute(s)], device=self.cache.device)
        with torch.inference_mode():
            hidden = self.model.hidden_states(tokens[None], attend.positions[None], attend, rows.to(tokens.device))
            out = head(hidden[0])
        self._counts["steps"] += 1
        self._counts["forward_seconds"] += time.perf_counter() - started
        return out

    # ---------------------------------------------------------------- generation
    def generate_tokens(
        self, prompts: Sequence[Sequence[int]], max_new_tokens: int = 32, stop: Sequence[str] = ()
    ) -> list[list[int]]:
        outputs: list[list[int]] = [[] for _ in prompts]
        waiting = deque(range(len(prompts)))  # (also sequences preempted when the cache ran out of blocks)
        running: dict[int, int] = {}  # prompt index -> sequence id
        eos = self.tokenizer.eos_token_id
        while waiting or running:
            step = self._admit(waiting, prompts, outputs, running) if waiting else []
            step = step or self._extend(running, outputs, waiting)
            seq_ids = [running[i] for i in step]
            last_rows = (
                torch.tensor(list(itertools.accumulate(len(self.cache.tokens_to_compute(s)) for s in seq_ids))) - 1
            )
            next_tokens = self._forward(seq_ids, last_rows, lambda h: self.model.project(h).argmax(-1)).tolist()
            for i, token in zip(step, next_tokens, strict=True):
                self.cache.commit(running[i])
                if token != eos:
                    outputs[i].append(token)
                if token == eos or self._finished(outputs[i], max_new_tokens, stop):
                    self.cache.free_sequence(running.pop(i))
        self._counts["requests"] += len(prompts)
        return outputs

    def _admit(
        self, waiting: deque[int], prompts: Sequence[Sequence[int]], outputs: list[list[int]], running: dict[int, int]
    ) -> list[int]:
        """Allocate waiting sequences (prompt plus anything generated before a preemption) for a prefill step."""
        step, budget = [], self.max_batch_tokens
        while waiting:
            i = waiting[0]
            tokens = [*prompts[i], *outputs[i]]
            if len(tokens) > self.model.args.context_length:
                raise ValueError(f"prompt {i} has {len(tokens)} tokens, more than the model's context")
            if step and len(tokens) > budget:
                break
            seq_id = next(self._seq_ids)
            try:
                self.cache.allocate_sequence(seq_id, tokens)
            except CacheFullError:
                if step or running:
                    break  # running sequences will finish and free blocks
                raise
            budget -= len(tokens) - self.cache.num_cached_tokens(seq_id)
            running[waiting.popleft()] = seq_id
            step.append(i)
        return step

    def _extend(self, running: dict[int, int], outputs: list[list[int]], waiting: deque[int]) -> list[int]:
        """Append each running sequence's last generated token for a decode step; when the cache runs out
        of blocks, preempt the newest sequences (free them; they wait to be recomputed, mostly from cache)."""
        step: list[int] = []
        for i in sorted(running):
            while i in running:
                try:
                    self.cache.extend_sequence(running[i], outputs[i][-1:])
                    step.append(i)
                    break
                except CacheFullError:
                    newest = max(j for j in running if j not in step)
                    self.cache.free_sequence(running.pop(newest))
                    waiting.appendleft(newest)
        return step

    @property
    def stats(self) -> dict[str, float | int]:
        """Requests, tokens requested / computed / served from cache, hit rate, steps, peak cache use."""
        cache = self.cache.stats
        return {
            **self._counts,
            "tokens_requested": cache["tokens_requested"],
            "tokens_computed": cache["computed_tokens"],
            "tokens_from_cache": cache["hit_tokens"],
            "hit_rate": cache["hit_rate"],
            "peak_blocks_used": cache["peak_blocks_used"],
            "peak_cache_fraction": cache["peak_blocks_used"] / (self.cache.num_blocks - 1),
        }
