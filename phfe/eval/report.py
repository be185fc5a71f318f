"""A run's readable summary: the metrics table (terminal and markdown) and the plots, as PNG files."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from phfe.eval.metrics import baseline, closed_books, outcome, summarize  # noqa: E402

COLUMNS = ("accuracy", "memorized_rate", "cfr", "memorization_ratio", "soft_memorization_ratio", "persuasion")
HEADERS = ("accuracy", "memorized", "CFR", "M_R", "soft M_R", "persuasion")


def _cell(estimate: dict[str, float]) -> str:
    if not estimate or estimate["n"] == 0 or math.isnan(estimate["value"]):
        return "—"
    return f"{estimate['value']:.2f} [{estimate['low']:.2f}, {estimate['high']:.2f}]"


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """The metrics as a markdown table (values with 95% intervals; — where a metric does not apply)."""
    lines = [
        "| family | condition | k | probes | " + " | ".join(HEADERS) + " | known items |",
        "|---|---|---|---|" + "---|" * len(HEADERS) + "---|",
    ]
    for row in rows:
        cells = " | ".join(_cell(row[c]) for c in COLUMNS)
        lines.append(
            f"| {row['family']} | {row['condition']} | {row['k']} | {row['n_probes']} | {cells} | {row['n_known']} |"
        )
    return "\n".join(lines)


def _panels(n: int, width: float = 4.5, height: float = 3.8) -> tuple[plt.Figure, list]:
    """A figure of ``n`` panels, three to a row."""
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _by_family(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    families: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        families[row["family"]].append(row)
    return dict(families)


def plot_learning_curves(rows: Sequence[dict[str, Any]], path: Path, metric: str = "accuracy") -> Path | None:
    """``metric`` against the number of demonstrations, one panel per family with several k."""
    families = {f: r for f, r in _by_family(rows).items() if len({x["k"] for x in r}) > 1}
    if not families:
        return None
    fig, axes = _panels(len(families), height=3.6)
    for ax, (family, family_rows) in zip(axes, families.items(), strict=True):
        conditions: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in family_rows:
            conditions[row["condition"]].append(row)
        for condition, points in sorted(conditions.items()):
            points = sorted((p for p in points if p[metric]["n"]), key=lambda p: p["k"])
            if not points:
                continue
            ks = [p["k"] for p in points]
            values = np.array([p[metric]["value"] for p in points])
            errors = np.array(
                [[v - p[metric]["low"], p[metric]["high"] - v] for v, p in zip(values, points, strict=True)]
            ).T
            ax.errorbar(ks, values, yerr=errors, marker="o", capsize=3, label=condition)
        ax.set(title=family, xlabel="demonstrations (k)", ylabel=metric, ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_conditions(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Accuracy and CFR per condition (at each family's largest k), one panel per family."""
    families = _by_family(rows)
    fig, axes = _panels(len(families))
    for ax, (family, family_rows) in zip(axes, families.items(), strict=True):
        k = max(r["k"] for r in family_rows)
        shown = [r for r in family_rows if r["k"] == k]
        x = np.arange(len(shown))
        for offset, metric in ((-0.2, "accuracy"), (0.2, "cfr")):
            values = np.array([r[metric]["value"] if r[metric]["n"] else np.nan for r in shown])
            low = np.array([r[metric]["low"] if r[metric]["n"] else np.nan for r in shown])
            high = np.array([r[metric]["high"] if r[metric]["n"] else np.nan for r in shown])
            ax.bar(x + offset, values, width=0.4, label=metric, yerr=[values - low, high - values], capsize=2)
        ax.set_xticks(x, [r["condition"] for r in shown], rotation=40, ha="right", fontsize=7)
        ax.set(title=f"{family} (k={k})", ylim=(0, 1.05))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_cfr_vs_knowledge(records: Sequence[dict[str, Any]], path: Path, bins: int = 5) -> Path | None:
    """CFR against how strongly the model knew the answer closed book (its closed-book log-odds of the
    memorized over the in-context answer), binned by quantile, one line per conflicting condition."""
    closed = closed_books(records)
    points: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for r in records:
        o, record = outcome(r), baseline(closed, r)
        if "follows_context" not in o or record is None or r["condition"] == "closed_book":
            continue
        base = dict(zip(record["candidates"], record["logprobs"], strict=True))
        mem, ctx = r["candidates"][r["memorized"]], r["candidates"][r["in_context"]]
        if mem in base and ctx in base:
            points[f"{r['family']}/{r['condition']}"].append((base[mem] - base[ctx], o["follows_context"]))
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in sorted(points.items()):
        knowledge, follows = np.array([v[0] for v in values]), np.array([v[1] for v in values], dtype=float)
        edges = np.quantile(knowledge, np.linspace(0, 1, bins + 1))
        which = np.clip(np.searchsorted(edges, knowledge, side="right") - 1, 0, bins - 1)
        centers = [knowledge[which == b].mean() for b in range(bins) if (which == b).any()]
        rates = [follows[which == b].mean() for b in range(bins) if (which == b).any()]
        ax.plot(centers, rates, marker="o", label=label)
    ax.set(xlabel="closed-book log-odds, memorized over in-context answer", ylabel="CFR", ylim=(-0.02, 1.02))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(records: Sequence[dict[str, Any]], out_dir: str | Path, title: str = "PHFE run") -> dict[str, Path]:
    """Write ``summary.json``, ``summary.md`` and the plots into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(records)
    paths = {"summary_json": out_dir / "summary.json", "summary_md": out_dir / "summary.md"}
    paths["summary_json"].write_text(json.dumps(rows, indent=1))
    plots = {
        "learning_curves": plot_learning_curves(rows, out_dir / "learning_curves.png"),
        "conditions": plot_conditions(rows, out_dir / "conditions.png"),
        "cfr_vs_knowledge": plot_cfr_vs_knowledge(records, out_dir / "cfr_vs_knowledge.png"),
    }
    paths.update({name: p for name, p in plots.items() if p is not None})
    figures = "\n".join(f"![{name}]({p.name})" for name, p in plots.items() if p is not None)
    paths["summary_md"].write_text(f"# {title}\n\n{summary_table(rows)}\n\n{figures}\n")
    return paths
