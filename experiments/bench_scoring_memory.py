"""Peak memory of scoring long continuations: PHFE's chunked scoring vs the whole logits at once.

    python experiments/bench_scoring_memory.py [--out experiments/results/bench_scoring_memory.md]

Eight requests of a 21-token context and a 240-token continuation (1,920 scored rows, two packed passes).
PHFE projects and reduces the scored rows 256 at a time (``Engine.score_tokens``); the reference takes all
1,920 rows' logits in one output projection and a ``log_softmax`` over them, as a plain batched forward pass
does (and PHFE's engine did per packed pass before it chunked).
Each runs in a fresh process; the table gives its peak RSS and how far scoring raised it above the loaded
model and cache.
"""

from __future__ import annotations

import json
import subprocess
import sys

from report import emit, header, script_parser

JOB = r"""
import json, resource, sys, time
import torch
from phfe.inference import Engine, resolve_source

model, way = sys.argv[1], sys.argv[2]
engine = Engine.from_gguf(resolve_source(model), memory_gb=0.25)
gen = torch.Generator().manual_seed(0)
vocab = engine.model.args.vocab_size
requests = [
    (torch.randint(10, vocab, (21,), generator=gen).tolist(), torch.randint(10, vocab, (240,), generator=gen).tolist())
    for _ in range(8)
]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
started = time.perf_counter()
if way == "phfe":
    total = sum(r.logprob for r in engine.score_tokens(requests))
else:  # the requests have equal lengths: one batch, all 1,920 rows' logits at once
    tokens = torch.tensor([context + continuation for context, continuation in requests])
    targets = tokens[:, 21:]
    with torch.inference_mode():
        logprobs = engine.model(tokens, logits_rows=torch.arange(20, 260)).log_softmax(-1)
        total = float(logprobs.gather(-1, targets[..., None]).sum())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print(json.dumps({"before": before, "peak": peak, "seconds": time.perf_counter() - started, "total": total}))
"""

WAYS = {"phfe": "PHFE, 256 rows at a time", "whole": "all rows' logits, then log_softmax"}


def measure(model: str, way: str) -> dict:
    done = subprocess.run([sys.executable, "-c", JOB, model, way], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = script_parser(__doc__).parse_args()
    rows = []
    for model in args.models:
        results = {way: measure(model, way) for way in WAYS}
        gap = abs(results["phfe"]["total"] - results["whole"]["total"])
        for way, r in results.items():
            rows.append(
                f"| {model} | {WAYS[way]} | {r['before']:.2f} GB | {r['peak']:.2f} GB | "
                f"+{r['peak'] - r['before']:.2f} GB | {r['seconds']:.1f} s | {gap:.1e} nats |"
            )
    emit(
        [
            *header("Peak memory of scoring 1,920 continuation rows (float32, CPU)", ("torch",)),
            "",
            "| model | scoring | RSS before scoring | peak RSS | scoring adds | time | total log-likelihood gap |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ],
        args.out,
    )


if __name__ == "__main__":
    main()
