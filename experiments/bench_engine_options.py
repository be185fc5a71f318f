"""Engine options against the default (float32, gather + SDPA): compiled flex_attention, bfloat16 compute.

    python experiments/bench_engine_options.py [--out experiments/results/bench_engine_options.md]

The workload is ``bench_scoring.py``'s (216 requests sharing an 8-shot prefix: 108 decisions between a
memorized and an in-context answer). Each option scores it on a fresh cache four times: the first pass pays
any torch.compile (one graph per query bucket), the fastest of the other three is the steady state a long
run sees. Against the default it reports speed, the log-likelihood differences and how many of the 108
decisions (which candidate scores higher) agree. Eager flex_attention is left out: it materializes every
query's scores against every cache slot and is meant for tiny test shapes.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from bench_scoring import workload
from report import emit, header, script_parser

from phfe.inference import Engine, ScoreResult, resolve_source
from phfe.inference.kv_cache import KVCacheManager

OPTIONS: dict[str, dict[str, Any]] = {
    "default (float32, sdpa)": {},
    "attention=flex_compiled": {"attention": "flex_compiled"},
    "dtype=bfloat16": {"dtype": torch.bfloat16},
}


def fresh_cache(cache: KVCacheManager) -> KVCacheManager:
    return KVCacheManager(
        cache.num_blocks, cache.block_size, cache.num_layers, cache.num_heads, cache.head_dim, cache.device, cache.dtype
    )


def timed_passes(engine: Engine, requests: list, passes: int = 4) -> tuple[list[ScoreResult], float, float]:
    """The scores, the first pass's seconds and the fastest later pass's."""
    seconds = []
    for _ in range(passes):
        engine.cache = fresh_cache(engine.cache)
        started = time.perf_counter()
        scores = engine.score_tokens(requests)
        seconds.append(time.perf_counter() - started)
    return scores, seconds[0], min(seconds[1:])


def decisions(scores: list[ScoreResult]) -> list[bool]:
    """Per (item, condition): whether the first candidate (the memorized answer) scores higher."""
    return [a.logprob > b.logprob for a, b in zip(scores[::2], scores[1::2], strict=True)]


def bench(model: str) -> list[str]:
    path, rows = resolve_source(model), []
    for name, options in OPTIONS.items():
        engine = Engine.from_gguf(path, memory_gb=1.0, block_size=16, max_batch_tokens=2048, **options)
        requests = [engine.encode_pair(c, x) for c, x in workload()]
        scores, first, steady = timed_passes(engine, requests)
        timing = f"| {model} | {name} | {first:.1f} s | {steady:.2f} s | {len(requests) / steady:.1f} |"
        if not rows:
            reference, base = scores, steady
            rows.append(f"{timing} 1.00 | — | — |")
            continue
        gaps = [abs(a.logprob - b.logprob) for a, b in zip(scores, reference, strict=True)]
        agree = sum(a == b for a, b in zip(decisions(scores), decisions(reference), strict=True))
        rows.append(
            f"{timing} {base / steady:.2f} | median {statistics.median(gaps):.1e}, max {max(gaps):.1e} | "
            f"{agree}/{len(requests) // 2} |"
        )
    return rows


def main() -> None:
    parser = script_parser(__doc__)
    args = parser.parse_args()
    rows = [row for model in args.models for row in bench(model)]
    emit(
        [
            *header("Engine options against the default: compiled flex_attention, bfloat16 (CPU)", ("torch",)),
            f"- workload: {len(workload())} requests (bench_scoring.py), fresh cache per pass",
            "",
            "| model | option | first pass | steady pass (best of 3) | requests/s | speed vs default | "
            "log-likelihood vs default (nats) | decisions agreeing |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ],
        args.out,
    )


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
