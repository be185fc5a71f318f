"""PHFE's first result: the default suite on both real models, with 4 demonstrations where a family uses them.

    python experiments/first_results.py [--out experiments/results/first_results]

For each model it writes the per-probe records, the summary (markdown, JSON) and the plots under
``<out>/<model>/``, adds the memorization report of family 6's texts, and prints the headline table: in
each condition, how often the winner is the true (memorized) answer and how often the in-context one.
"""

from __future__ import annotations

import time
from pathlib import Path

from report import emit, header, script_parser

from phfe.data.suite import default_suite, suite_probes
from phfe.data.verbatim import famous_texts
from phfe.eval.evaluator import evaluate
from phfe.eval.memorization import memorization_report
from phfe.eval.metrics import summarize
from phfe.eval.report import summary_table, write_report
from phfe.inference import Engine
from phfe.tutors import DemonstrationTutor


def run(model: str, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    engine = Engine.from_gguf(model, memory_gb=1.0, block_size=16, max_batch_tokens=2048)
    probes = suite_probes(default_suite(), seed=0, tutor=DemonstrationTutor())
    records = evaluate(engine, probes, records_path=out / "records.jsonl")
    scored = time.perf_counter() - started
    write_report(records, out, title=f"Default suite, {model}, seed 0, demonstrations tutor")
    memory = memorization_report(engine, famous_texts(), prefix_len=16, suffix_len=16)
    stats = engine.stats
    lines = [
        f"## {model}",
        "",
        f"{len(probes)} probes, {sum(len(p.candidates) for p in probes)} scored continuations in {scored:.0f} s "
        f"(load included); {stats['tokens_computed']} of {stats['tokens_requested']} tokens computed "
        f"(prefix-cache hit rate {stats['hit_rate']:.0%}).",
        "",
        summary_table(summarize(records)),
        "",
        "Memorization of family 6's texts (16-token windows; shuffled-word controls):",
        "",
        "| text | kind | tokens | mean log-prob | Min-20% | Min-20%++ | 16/16-extractable |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in memory:
        extractable = "—" if row["extractable"] is None else f"{row['extractable']:.2f}"
        lines.append(
            f"| {row['text']} | {row['kind']} | {row['n_tokens']} | {row['mean_logprob']:.2f} | "
            f"{row['min_k']:.2f} | {row['min_k_plus_plus']:.2f} | {extractable} |"
        )
    return lines + [""]


def main() -> None:
    parser = script_parser(__doc__, out=Path("experiments/results/first_results"))
    args = parser.parse_args()
    lines = header("PHFE first results: the default suite on the real models")
    for model in args.models:
        lines += ["", *run(model, args.out / model)]
    emit(lines, args.out / "README.md")


if __name__ == "__main__":
    main()
