"""Scoring throughput on a counterfactual-QA workload: PHFE's paged engine vs transformers vs llama.cpp.

    python experiments/bench_scoring.py [--llama-python PATH] [--out experiments/results/bench_scoring.md]

The workload is what the benchmark suite produces: a k-shot prefix shared by every item, three conditions
(closed book, congruent context, conflicting context) and two candidates (memorized, in-context) each. All
engines score the same tokens (the file's own tokenizer). llama.cpp runs through llama-cpp-python when an
interpreter that has it is given (``--llama-python``; it builds from source, ~15 min on 2 cores, so it is no
project dependency): once re-evaluating every request, once reusing the KV cache of the previous request's
common prefix (requests sorted so neighbours share the most).
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import time
from pathlib import Path

import torch
from report import emit, header, script_parser

from phfe.inference import Engine, TransformersEngine, resolve_source

CAPITALS = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Russia", "Moscow"),
    ("China", "Beijing"),
    ("India", "New Delhi"),
    ("Brazil", "Brasilia"),
    ("Mexico", "Mexico City"),
    ("Kenya", "Nairobi"),
    ("Greece", "Athens"),
    ("Turkey", "Ankara"),
    ("Portugal", "Lisbon"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Poland", "Warsaw"),
    ("Austria", "Vienna"),
    ("Ireland", "Dublin"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Argentina", "Buenos Aires"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("Cuba", "Havana"),
    ("Hungary", "Budapest"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Belgium", "Brussels"),
    ("Netherlands", "Amsterdam"),
    ("Iran", "Tehran"),
    ("Iraq", "Baghdad"),
    ("Nigeria", "Abuja"),
    ("Ghana", "Accra"),
    ("Colombia", "Bogota"),
    ("Venezuela", "Caracas"),
    ("Philippines", "Manila"),
    ("Indonesia", "Jakarta"),
    ("Pakistan", "Islamabad"),
    ("Ukraine", "Kyiv"),
    ("Romania", "Bucharest"),
]
LLAMA_JOB = r"""
import json, sys, time
import numpy as np
from llama_cpp import Llama
path, reuse = sys.argv[1], sys.argv[2] == "reuse"
requests = json.load(sys.stdin)
llm = Llama(path, n_ctx=1024, n_batch=512, n_threads=2, logits_all=True, verbose=False)
order = sorted(range(len(requests)), key=lambda i: requests[i][0] + requests[i][1]) if reuse else range(len(requests))
scores, computed, previous = [0.0] * len(requests), 0, []
started = time.perf_counter()
for i in order:
    context, continuation = requests[i]
    tokens = context + continuation
    keep = 0
    if reuse:
        while keep < min(len(previous), len(context) - 1) and previous[keep] == tokens[keep]:
            keep += 1
    llm.n_tokens = keep
    llm.eval(tokens[keep:])
    computed += len(tokens) - keep
    logits = np.asarray(llm.scores[len(context) - 1 : len(tokens) - 1], dtype=np.float64)
    logits -= logits.max(-1, keepdims=True)
    logprobs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    scores[i] = float(sum(logprobs[j, t] for j, t in enumerate(continuation)))
    previous = tokens
print(json.dumps({"seconds": time.perf_counter() - started, "scores": scores, "computed": computed}))
"""


def workload(k_shots: int = 8, n_items: int = 36, seed: int = 0) -> list[tuple[str, str]]:
    """(context, continuation) pairs: items x {closed book, congruent, conflicting} x {memorized, in-context}."""
    rng = random.Random(seed)
    shots, items = CAPITALS[-k_shots:], CAPITALS[:n_items]
    prefix = "Answer with the capital city.\n\n" + "".join(
        f"Q: What is the capital of {c}?\nA: {x}\n\n" for c, x in shots
    )
    pairs = []
    for country, capital in items:
        fake = rng.choice([x for _, x in items if x != capital])
        question = f"Q: What is the capital of {country}?\nA:"
        for context in (
            "",
            f"Context: The capital of {country} is {capital}.\n",
            f"Context: The capital of {country} is {fake}.\n",
        ):
            pairs += [(prefix + context + question, f" {capital}"), (prefix + context + question, f" {fake}")]
    return pairs


def unique_prefix_tokens(requests: list[tuple[list[int], list[int]]]) -> int:
    """The optimum number of computed tokens: the size of the token trie of all requests."""
    return len({tuple(c + x)[: n + 1] for c, x in requests for n in range(len(c) + len(x))})


def run_llama(python: str, path: Path, requests: list, reuse: bool) -> dict:
    done = subprocess.run(
        [python, "-c", LLAMA_JOB, str(path), "reuse" if reuse else "plain"],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench(model: str, llama_python: str | None) -> list[str]:
    path = resolve_source(model)
    pairs = workload()
    engine = Engine.from_gguf(path, memory_gb=1.0, block_size=16, max_batch_tokens=2048)
    requests = [engine.encode_pair(c, x) for c, x in pairs]
    n_tokens = sum(len(c) + len(x) for c, x in requests)
    warm_up = [("Once upon a time", " there"), ("Hello", " world")]  # first-call costs; shares no prefix
    engine.score(warm_up)
    started = time.perf_counter()
    ours = engine.score_tokens(requests)
    phfe_seconds = time.perf_counter() - started
    stats = engine.stats  # (the warm-up's few tokens included)

    reference = TransformersEngine.from_gguf(path, batch_size=8)
    reference.score(warm_up)
    started = time.perf_counter()
    theirs = reference.score_tokens(requests)
    hf_seconds = time.perf_counter() - started
    gap = max(abs(a.logprob - b.logprob) for a, b in zip(ours, theirs, strict=True))

    optimum = unique_prefix_tokens(requests)
    rows = [
        f"| {model} | transformers (batched forward, batch 8) | {len(requests) / hf_seconds:.1f} | {n_tokens} | "
        f"{hf_seconds:.1f} s | reference |",
        f"| {model} | **PHFE** (paged, prefix-cached) | **{len(requests) / phfe_seconds:.1f}** | "
        f"{stats['tokens_computed']} (optimum {optimum}) | {phfe_seconds:.2f} s | max {gap:.1e} nats |",
    ]
    if llama_python:
        for reuse in (False, True):
            r = run_llama(llama_python, path, requests, reuse)
            diff = statistics.median(abs(a - b.logprob) for a, b in zip(r["scores"], ours, strict=True))
            name = "llama.cpp, reusing the previous prefix" if reuse else "llama.cpp, no reuse"
            rows.append(
                f"| {model} | {name} | {len(requests) / r['seconds']:.1f} | {r['computed']} | {r['seconds']:.1f} s | "
                f"median {diff:.2f} nats |"
            )
    return rows


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--llama-python", help="a Python interpreter with llama-cpp-python installed")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = [row for model in args.models for row in bench(model, args.llama_python)]
    pairs = workload()
    llama = "not run (no --llama-python)"
    if args.llama_python:
        llama = subprocess.run(
            [args.llama_python, "-c", "import llama_cpp; print(llama_cpp.__version__)"], capture_output=True, text=True
        ).stdout.strip()
    emit(
        [
            *header("Scoring throughput: counterfactual QA, k-shot prefix shared by all items (float32, CPU)"),
            f"- llama-cpp-python: {llama}",
            f"- workload: {len(pairs)} requests (36 items x 3 conditions x 2 candidates, 8-shot prefix)",
            "",
            "| model | engine | requests/s | tokens computed | time | log-likelihood vs PHFE |",
            "|---|---|---|---|---|---|",
            *rows,
        ],
        args.out,
    )


if __name__ == "__main__":
    main()
