"""A sweep's readable summary: every finished job of a Hydra multirun side by side, quantized runs compared
with their source model on identical probes, and plots of the metrics against the quantization level.

A sweep directory holds one directory per job, at any depth: ``results.json`` (written by :mod:`phfe.app`
when the job finishes, with ``"status": "finished"``) and ``records.jsonl`` (one record per probe). Jobs
without a finished ``results.json`` are reported as unfinished and left out.

Jobs are ordered by model, then quantization level (:data:`QUANT_ORDER`, unknown types last), then cache
and benchmark. Each job's metrics are the ``summary`` its ``results.json`` holds (computed from its records
when absent). Paired comparisons match every quantized job with the source job of its model, cache and
benchmark (by name), and pair only identical probes (:func:`phfe.eval.metrics.compare_runs`).

Default plots (:data:`DEFAULT_PANELS`), one panel each where the sweep has the family and condition, at the
largest k present: the metric that best shows, per family, what quantization does to knowledge and to
context-following:

- counterfactual facts: closed-book accuracy (knowledge kept), and CFR and soft M_R in conflicting
  context (context against memory; soft M_R is the lower-variance, graded version);
- flipped labels: CFR with flipped labels (demonstrations overriding a label prior);
- rule worlds: CFR in base 9 (the canonical counterfactual world; every world is in the table);
- binding: accuracy of a plain binding (the reading ceiling, where no memory competes);
- prior sequences: CFR with stride 2 (the new stride against the default successor);
- verbatim memory: CFR with an edited passage in context (the copy against the memorized text);
- external facts: CFR in conflicting context.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from phfe.eval.evaluator import read_records  # noqa: E402
from phfe.eval.metrics import GroupKey, compare_runs, summarize  # noqa: E402
from phfe.eval.report import COLUMNS, HEADERS, _cell, _panels  # noqa: E402

RESULTS, RECORDS = "results.json", "records.jsonl"
SOURCE = "source"
QUANT_ORDER = ("source", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
TABLE_METRICS = ("accuracy", "memorized_rate", "cfr", "soft_memorization_ratio")
CSV_METRICS = ("accuracy", "accuracy_normalized", *COLUMNS[1:])
CSV_FIELDS = ("model", "q", "cache", "family", "condition", "k", "metric", "value", "low", "high", "n")
NAMES = {**dict(zip(COLUMNS, HEADERS, strict=True)), "accuracy_normalized": "accuracy (per token)"}
DEFAULT_PANELS = (  # family, condition, metric; see the module docstring
    ("counterfactual_facts", "closed_book", "accuracy"),
    ("counterfactual_facts", "conflicting", "cfr"),
    ("counterfactual_facts", "conflicting", "soft_memorization_ratio"),
    ("flipped_labels", "flipped", "cfr"),
    ("rule_worlds", "base9", "cfr"),
    ("binding", "bind", "accuracy"),
    ("prior_sequences", "stride_2", "cfr"),
    ("verbatim_memory", "edited_in_context", "cfr"),
    ("external_facts", "conflicting", "cfr"),
)


@dataclass
class Job:
    """One finished job of a sweep: its directory and ``results.json``; records are read when first used.

    ``label`` names the job in tables (model and q, with cache, benchmark or directory where needed to tell
    jobs apart); ``series`` is the same without q: the line a job belongs to in the plots.
    """

    dir: Path
    results: dict[str, Any]
    label: str = ""
    series: str = ""

    @property
    def model(self) -> str:
        return self.results["model"]["name"]

    @property
    def q(self) -> str:
        return self.results["q"]["type"]

    @property
    def cache(self) -> str:
        return self.results["cache"]["name"]

    @property
    def benchmark(self) -> str:
        return self.results["benchmark"]["name"]

    @property
    def seeds(self) -> list[int]:
        return list(self.results["benchmark"].get("seeds", []))

    @property
    def stats(self) -> dict[str, Any]:
        return self.results.get("stats", {})

    @cached_property
    def records(self) -> list[dict[str, Any]]:
        return read_records(self.dir / RECORDS)

    @cached_property
    def summary(self) -> list[dict[str, Any]]:
        """The job's rows of :func:`phfe.eval.metrics.summarize`."""
        return self.results.get("summary") or summarize(self.records)

    @cached_property
    def rows(self) -> dict[GroupKey, dict[str, Any]]:
        """The summary rows by (family, condition, k)."""
        return {(r["family"], r["condition"], r["k"]): r for r in self.summary}


def q_rank(q: str) -> tuple[int, str]:
    """Sort key of a quantization type: :data:`QUANT_ORDER`, then unknown types by name."""
    return (QUANT_ORDER.index(q), "") if q in QUANT_ORDER else (len(QUANT_ORDER), q)


def _finished(path: Path) -> dict[str, Any] | None:
    """The results in ``path`` if they say the job finished (a file cut short by a crash does not)."""
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return results if results.get("status") == "finished" else None


def _label(jobs: list[Job]) -> None:
    """Name each job by model and q, adding cache and benchmark when the sweep varies them, and the job's
    directory when that still leaves two jobs with one name."""
    extra = [f for f in ("cache", "benchmark") if len({getattr(j, f) for j in jobs}) > 1]
    for job in jobs:
        job.series = " ".join([job.model, *(getattr(job, f) for f in extra)])
        job.label = " ".join([job.model, job.q, *(getattr(job, f) for f in extra)])
    if len({j.label for j in jobs}) < len(jobs):
        root = Path(os.path.commonpath([j.dir for j in jobs]))
        for job in jobs:
            job.label += f" ({job.dir.relative_to(root)})"


def load_sweep(path: str | os.PathLike[str]) -> list[Job]:
    """The finished jobs under ``path`` (searched recursively), ordered by model, q, cache and benchmark."""
    jobs = [Job(p.parent, r) for p in sorted(Path(path).rglob(RESULTS)) if (r := _finished(p)) is not None]
    jobs.sort(key=lambda j: (j.model, q_rank(j.q), j.cache, j.benchmark, str(j.dir)))
    if jobs:
        _label(jobs)
    return jobs


def unfinished_jobs(path: str | os.PathLike[str]) -> list[Path]:
    """The job directories under ``path`` with records but no finished ``results.json``."""
    dirs = {p.parent for p in Path(path).rglob(RECORDS)} | {p.parent for p in Path(path).rglob(RESULTS)}
    return sorted(d for d in dirs if _finished(d / RESULTS) is None)


def _number(value: Any, spec: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def overview_table(jobs: Sequence[Job], unfinished: Sequence[Path] = ()) -> str:
    """The jobs as a markdown table, then the unfinished ones (left out of everything else)."""
    lines = [
        "| job | model | q | cache | benchmark | seeds | probes | requests/s | hit rate | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for job in jobs:
        s = job.stats
        probes = s.get("probes", sum(r["n_probes"] for r in job.summary))
        seeds = ", ".join(map(str, job.seeds))
        lines.append(
            f"| {job.label} | {job.model} | {job.q} | {job.cache} | {job.benchmark} | {seeds} | {probes} | "
            f"{_number(s.get('requests_per_second'), '.1f')} | {_number(s.get('hit_rate'), '.2f')} | "
            f"{_number(job.results.get('run', {}).get('seconds'), '.0f')} |"
        )
    if unfinished:
        lines += ["", f"Unfinished, left out ({len(unfinished)}):", ""]
        lines += [f"- {d} (probes scored: {_count_lines(d / RECORDS)})" for d in unfinished]
    return "\n".join(lines)


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def sweep_table(jobs: Sequence[Job], metric: str) -> str:
    """One metric as a markdown table: a row per (family, condition, k) where some job has it, a column per
    job (values with 95% intervals; — where the metric does not apply or the job lacks the row)."""

    def cell(job: Job, key: GroupKey) -> str:
        return _cell(job.rows[key][metric]) if key in job.rows else "—"

    keys = sorted({key for job in jobs for key in job.rows})
    lines = [
        "| family | condition | k | " + " | ".join(job.label for job in jobs) + " |",
        "|---|---|---|" + "---|" * len(jobs),
    ]
    for key in keys:
        cells = [cell(job, key) for job in jobs]
        if any(c != "—" for c in cells):
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_tables(jobs: Sequence[Job], metrics: Sequence[str] = TABLE_METRICS) -> str:
    """A titled :func:`sweep_table` per metric."""
    return "\n\n".join(f"### {NAMES.get(m, m)}\n\n{sweep_table(jobs, m)}" for m in metrics)


def summary_rows(jobs: Sequence[Job], metrics: Sequence[str] = CSV_METRICS) -> list[dict[str, Any]]:
    """The sweep in long format: one row per job, group and metric that applies (n > 0)."""
    out = []
    for job in jobs:
        for row in job.summary:
            for metric in metrics:
                estimate = row[metric]
                if estimate["n"]:
                    group = {"family": row["family"], "condition": row["condition"], "k": row["k"]}
                    values = {f: estimate[f] for f in ("value", "low", "high", "n")}
                    out.append(
                        {"model": job.model, "q": job.q, "cache": job.cache, **group, "metric": metric, **values}
                    )
    return out


def paired_comparisons(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """Every quantized job against its model's source job of the same cache and benchmark, on their common
    probes: ``groups`` holds :func:`phfe.eval.metrics.compare_runs` rows (source first), empty when the two
    share no probe; ``reference`` is None when the sweep has no such source job."""
    out = []
    for job in jobs:
        if job.q == SOURCE:
            continue
        sources = [
            s
            for s in jobs
            if s.q == SOURCE and (s.model, s.cache, s.benchmark) == (job.model, job.cache, job.benchmark)
        ]
        groups = compare_runs(sources[0].records, job.records) if sources else []
        out.append(
            {
                "model": job.model,
                "q": job.q,
                "cache": job.cache,
                "benchmark": job.benchmark,
                "job": job.label,
                "reference": sources[0].label if sources else None,
                "n_paired": sum(g["n_paired"] for g in groups),
                "groups": groups,
            }
        )
    return out


def _difference(d: dict[str, float] | None) -> str:
    if not d or math.isnan(d["low"]):
        return "—" if not d else f"{d['difference']:+.2f}"
    return f"{d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def paired_table(comparisons: Sequence[dict[str, Any]]) -> str:
    """The paired comparisons in markdown: a heading and a table per quantized job, notes where none pair."""
    parts = [
        "Per group, on the probes both runs scored: McNemar's test on correctness (b: right with the source, "
        "wrong quantized; c: the reverse; flip rate = (b + c) / paired) and the paired differences "
        "(quantized − source) of CFR and soft M_R, with 95% bootstrap intervals."
    ]
    for c in comparisons:
        title = f"### {c['job']} vs {c['reference'] or 'source'}"
        if c["reference"] is None:
            parts.append(
                f"{title}\n\nNo source job of {c['model']} with cache {c['cache']} and benchmark "
                f"{c['benchmark']}: nothing to compare with."
            )
            continue
        if not c["groups"]:
            parts.append(f"{title}\n\nNo probes in common with the source job: nothing paired.")
            continue
        lines = [
            f"{title}\n\n{c['n_paired']} paired probes.\n",
            "| family | condition | k | paired | b | c | p (McNemar) | flip rate | ΔCFR | Δsoft M_R |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for g in c["groups"]:
            test = g.get("mcnemar")
            mcnemar = (
                f"{test['b']} | {test['c']} | {test['p_value']:.3g} | {test['flip_rate']:.2f}"
                if test
                else "— | — | — | —"
            )
            lines.append(
                f"| {g['family']} | {g['condition']} | {g['k']} | {g['n_paired']} | {mcnemar} | "
                f"{_difference(g.get('follows_context'))} | {_difference(g.get('soft_mr'))} |"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _largest_k(jobs: Sequence[Job], family: str, condition: str) -> int | None:
    ks = [k for job in jobs for (f, c, k) in job.rows if (f, c) == (family, condition)]
    return max(ks) if ks else None


def _draw(ax: plt.Axes, jobs: Sequence[Job], family: str, condition: str, metric: str, k: int | None) -> bool:
    """Draw ``metric`` against q, a line per series (model; the first job of a series at each level); False
    when no job has a value to draw."""
    k = _largest_k(jobs, family, condition) if k is None else k
    points: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for job in jobs:
        estimate = job.rows.get((family, condition, k), {}).get(metric)
        if estimate and estimate["n"] and not math.isnan(estimate["value"]):
            points[job.series].setdefault(job.q, estimate)
    if not points:
        return False
    levels = sorted({q for series in points.values() for q in series}, key=q_rank)
    for i, (series, by_q) in enumerate(points.items()):
        shown = [q for q in levels if q in by_q]
        x = np.array([levels.index(q) for q in shown]) + (i - (len(points) - 1) / 2) * 0.06
        values = np.array([by_q[q]["value"] for q in shown])
        low = np.array([by_q[q]["low"] for q in shown])
        high = np.array([by_q[q]["high"] for q in shown])
        errors = np.nan_to_num(np.array([values - low, high - values]))
        ax.errorbar(x, values, yerr=errors, marker="o", capsize=3, label=series)
    ax.set_xticks(range(len(levels)), levels)
    ax.set(title=f"{family}/{condition} (k={k})", xlabel="quantization", ylabel=NAMES.get(metric, metric))
    if metric != "persuasion":
        ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    return True


def _save(fig: plt.Figure, path: str | os.PathLike[str]) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_metric_vs_quantization(
    jobs: Sequence[Job],
    path: str | os.PathLike[str],
    family: str,
    condition: str,
    metric: str,
    k: int | None = None,
) -> Path | None:
    """``metric`` of one group against the quantization level (categorical, in :data:`QUANT_ORDER`), a line
    per model with 95% intervals as error bars; ``k`` None: the largest k present. None when no job has it."""
    fig, ax = plt.subplots(figsize=(5, 3.8))
    if not _draw(ax, jobs, family, condition, metric, k):
        plt.close(fig)
        return None
    return _save(fig, path)


def plot_default(jobs: Sequence[Job], path: str | os.PathLike[str]) -> Path | None:
    """The :data:`DEFAULT_PANELS` the sweep has, in one figure; None when it has none of them."""
    panels = [p for p in DEFAULT_PANELS if _largest_k(jobs, p[0], p[1]) is not None]
    if not panels:
        return None
    fig, axes = _panels(len(panels))
    for ax, (family, condition, metric) in zip(axes, panels, strict=True):
        _draw(ax, jobs, family, condition, metric, None)
    return _save(fig, path)


def write_sweep_report(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Write ``sweep_report.md``, ``sweep_summary.csv`` and the plots into ``out`` (default: the sweep
    directory); return their paths. Raises ValueError when the sweep has no finished job."""
    jobs = load_sweep(path)
    if not jobs:
        raise ValueError(f"{path}: no finished job (no results.json with status finished)")
    out_dir = Path(out if out is not None else path)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"report": out_dir / "sweep_report.md", "summary_csv": out_dir / "sweep_summary.csv"}
    with open(paths["summary_csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(summary_rows(jobs))
    plot = plot_default(jobs, out_dir / "quantization.png")
    if plot is not None:
        paths["quantization"] = plot
    sections = [
        f"# Sweep {path}",
        f"## Jobs\n\n{overview_table(jobs, unfinished_jobs(path))}",
        "## Metrics\n\nValues with 95% intervals (Wilson for rates, clustered bootstrap for soft M_R); — where a "
        f"metric does not apply.\n\n{sweep_tables(jobs)}",
    ]
    if plot is not None:
        sections.append(f"## Metrics against quantization\n\n![quantization]({plot.name})")
    sections.append(f"## Paired comparisons with the source model\n\n{paired_table(paired_comparisons(jobs))}")
    paths["report"].write_text("\n\n".join(sections) + "\n")
    return paths
