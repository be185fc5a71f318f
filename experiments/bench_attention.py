"""Attention backends over the paged KV cache: gather + SDPA against compiled flex_attention, same requests.

    python experiments/bench_attention.py [--out experiments/results/bench_attention.md]

The workload is ``bench_scoring.py``'s (216 requests sharing an 8-shot prefix). Each backend scores it on
a fresh cache four times: the first pass pays torch.compile (one graph per query bucket), the fastest of the
other three is the steady state a long run sees. Eager flex_attention is left out: it materializes every query's scores
against every cache slot and is meant for tiny test shapes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from bench_scoring import workload
from report import emit, header

from phfe.inference import KNOWN_SOURCES, Engine, resolve_source
from phfe.inference.kv_cache import KVCacheManager

BACKENDS = ("sdpa", "flex_compiled")


def fresh_cache(cache: KVCacheManager) -> KVCacheManager:
    return KVCacheManager(
        cache.num_blocks, cache.block_size, cache.num_layers, cache.num_heads, cache.head_dim, dtype=cache.dtype
    )


def bench(model: str) -> list[str]:
    engine = Engine.from_gguf(resolve_source(model), memory_gb=1.0, block_size=16, max_batch_tokens=2048)
    requests = [engine.encode_pair(c, x) for c, x in workload()]
    rows, scores = [], {}
    for backend in BACKENDS:
        engine.attention = backend
        seconds = []
        for _ in range(4):
            engine.cache = fresh_cache(engine.cache)
            started = time.perf_counter()
            scores[backend] = engine.score_tokens(requests)
            seconds.append(time.perf_counter() - started)
        rows.append((backend, (seconds[0], min(seconds[1:]))))
    gap = max(abs(a.logprob - b.logprob) for a, b in zip(*scores.values(), strict=True))
    base = rows[0][1][1]
    return [
        f"| {model} | {backend} | {first:.1f} s | {steady:.2f} s | {len(requests) / steady:.1f} | "
        f"{base / steady:.2f} | {'reference' if backend == 'sdpa' else f'max {gap:.1e} nats'} |"
        for backend, (first, steady) in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(KNOWN_SOURCES))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [row for model in args.models for row in bench(model)]
    emit(
        [
            *header("Attention backends: gather + SDPA vs compiled flex_attention (float32, CPU)", ("torch",)),
            f"- workload: {len(workload())} requests (bench_scoring.py), fresh cache per pass",
            "",
            "| model | attention | first pass (compiles) | steady pass (best of 3) | requests/s | speed vs sdpa | "
            "log-likelihood vs sdpa |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ],
        args.out,
    )


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
