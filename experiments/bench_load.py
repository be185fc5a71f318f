"""GGUF file -> model and tokenizer ready to score: PHFE vs transformers, each in a fresh process.

    python experiments/bench_load.py [--out experiments/results/bench_load.md]

Each job runs in its own Python process (imports excluded from the timing, as both import before the
clock starts) and reports its wall time and peak resident memory (``ru_maxrss``). PHFE's tokenizer is
timed both on its first build (cache cleared) and from its cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from report import emit, header, script_parser

from phfe.inference import inspect_gguf, resolve_source

JOB = """
import json, resource, sys, time
import torch
{imports}
path = sys.argv[1]
started = time.perf_counter()
{body}
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""
JOBS = {
    "transformers": (
        "import os\nfrom transformers import AutoModelForCausalLM, AutoTokenizer",
        "d, f = os.path.split(path)\n"
        "tokenizer = AutoTokenizer.from_pretrained(d, gguf_file=f)\n"
        "model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)",
    ),
    "PHFE (tokenizer built)": (
        "from phfe.models.build import build_model\nfrom phfe.models.tokenizer import load_tokenizer",
        "tokenizer = load_tokenizer(path, cache_dir=sys.argv[2])\nmodel = build_model(path)",
    ),
    "PHFE (tokenizer cached)": (
        "from phfe.models.build import build_model\nfrom phfe.models.tokenizer import load_tokenizer",
        "tokenizer = load_tokenizer(path, cache_dir=sys.argv[2])\nmodel = build_model(path)",
    ),
}


def run_job(name: str, path: Path, cache: str) -> dict[str, float]:
    imports, body = JOBS[name]
    code = JOB.format(imports=imports, body=body)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TQDM_DISABLE="1")
    done = subprocess.run([sys.executable, "-c", code, str(path), cache], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{name} failed on {path}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = script_parser(__doc__)
    args = parser.parse_args()

    rows = []
    for model in args.models:
        path = resolve_source(model)
        weights_gb = sum(t["n_elements"] for t in inspect_gguf(path)["tensors"]) * 4 / 1e9
        with tempfile.TemporaryDirectory() as cache:
            results = {name: run_job(name, path, cache) for name in JOBS}
        base = results["transformers"]
        for name, r in results.items():
            rows.append(
                f"| {model} | {name} | {r['seconds']:.2f} s | {base['seconds'] / r['seconds']:.1f}x | "
                f"{r['peak_rss'] / 1e9:.2f} GB | {weights_gb:.2f} GB |"
            )
    emit(
        [
            *header("GGUF file -> model + tokenizer ready to score (float32, CPU), fresh process each"),
            "",
            "| model | loader | time | vs transformers | peak RSS | f32 weights |",
            "|---|---|---|---|---|---|",
            *rows,
        ],
        args.out,
    )


if __name__ == "__main__":
    main()
