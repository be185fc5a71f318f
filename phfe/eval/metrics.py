"""Metrics of in-context learning versus memorization, per family, condition and number of demonstrations.

From each probe's record (:mod:`phfe.eval.evaluator`):

- accuracy: the winning candidate (highest summed log-likelihood; ``accuracy_normalized``: per-token mean)
  is the probe's target, the in-context answer if it teaches one, else the memorized one;
- memorized rate: the winner is the memorized answer (closed book: knowledge; in context: resistance);
- CFR, context-following rate: mean 1[LL(in-context) > LL(memorized)] (ROME's efficacy form);
- M_R, memorization ratio: p_o / (p_o + p_s), the shares of probes whose winner is the original (memorized)
  or the substituted (in-context) answer (Longpre et al. 2021);
- soft M_R: mean sigmoid(LL(memorized) - LL(in-context)), lower variance;
- persuasion: the shift of the log-odds LL(in-context) - LL(memorized) from the item's closed-book probe;
- the known-item filter: items whose closed-book probe picks the memorized answer (ConflictBank); every
  metric is also reported on them alone, with N_known.

Rates carry Wilson 95% intervals; M_R, soft M_R and persuasion carry bootstrap intervals clustered by
template (relation, task) when a group spans several templates, else by entity.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from phfe.eval.stats import bootstrap_interval, mcnemar_test, memorization_ratio, paired_bootstrap_difference, sigmoid
from phfe.eval.stats import wilson_interval as _wilson

GroupKey = tuple[str, str, int]  # family, condition, k
MIN_TEMPLATE_CLUSTERS = 5


def outcome(r: dict[str, Any]) -> dict[str, Any]:
    """Per-probe quantities the metrics average: correctness, choices, and (where a probe pits an in-context
    answer against a different memorized one) context-following, log-odds and soft memorization."""
    lp, mem, ctx, winner = r["logprobs"], r["memorized"], r["in_context"], r["winner"]
    out: dict[str, Any] = {
        "correct": None if r["target"] is None else winner == r["target"],
        "correct_normalized": None if r["target"] is None else r["winner_normalized"] == r["target"],
        "chose_memorized": mem is not None and winner == mem,
        "chose_in_context": ctx is not None and winner == ctx,
    }
    if mem is not None and ctx is not None and mem != ctx:
        out["follows_context"] = lp[ctx] > lp[mem]
        out["log_odds"] = lp[ctx] - lp[mem]
        out["soft_mr"] = float(sigmoid(lp[mem] - lp[ctx]))
    return out


def _item(r: dict[str, Any]) -> tuple[str, int, str]:
    return r["family"], r["seed"], r["item_id"]


def closed_books(records: Sequence[dict[str, Any]]) -> dict[tuple[str, int, str], dict[int, dict[str, Any]]]:
    """The closed-book records of each item (family, seed, item id), by k."""
    closed: dict[tuple[str, int, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        if r["condition"] == "closed_book":
            closed[_item(r)][r["k"]] = r
    return dict(closed)


def baseline(closed: dict, r: dict[str, Any]) -> dict[str, Any] | None:
    """The closed-book record a record is compared with: its item's at the same k, else at the smallest k
    (families whose baseline is zero-shot)."""
    by_k = closed.get(_item(r))
    return None if not by_k else by_k.get(r["k"], by_k[min(by_k)])


def is_known(closed: dict, r: dict[str, Any]) -> bool:
    """Whether the record's item is answered right closed book (the memorized answer wins)."""
    base = baseline(closed, r)
    return base is not None and base["memorized"] is not None and base["winner"] == base["memorized"]


def _clusters(rows: Sequence[dict[str, Any]]) -> list[str]:
    templates = [r["template_id"] for r in rows]
    return templates if len(set(templates)) >= MIN_TEMPLATE_CLUSTERS else [r["entity"] for r in rows]


def _rate(flags: Sequence[bool]) -> dict[str, float]:
    low, high = _wilson(int(sum(flags)), len(flags))
    return {"value": float(np.mean(flags)) if flags else float("nan"), "low": low, "high": high, "n": len(flags)}


def _bootstrapped(values: np.ndarray, clusters: list[str], statistic: Callable | None = None) -> dict[str, float]:
    if len(values) == 0:
        return {"value": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    statistic = statistic or np.mean
    low, high = bootstrap_interval(values, clusters=clusters, statistic=statistic)
    return {"value": float(statistic(values)), "low": low, "high": high, "n": len(values)}


def group_metrics(rows: Sequence[dict[str, Any]], closed_book: dict) -> dict[str, Any]:
    """All metrics of one group of records (one family, condition and k)."""
    outcomes = [outcome(r) for r in rows]
    scored = [(r, o) for r, o in zip(rows, outcomes, strict=True) if o["correct"] is not None]
    conflict = [(r, o) for r, o in zip(rows, outcomes, strict=True) if "follows_context" in o]
    choices = np.array([[o["chose_memorized"], o["chose_in_context"]] for _, o in conflict], dtype=bool)
    persuasion = []
    for r, o in conflict:
        record = baseline(closed_book, r)
        base = dict(zip(record["candidates"], record["logprobs"], strict=True)) if record else {}
        mem, ctx = r["candidates"][r["memorized"]], r["candidates"][r["in_context"]]
        if mem in base and ctx in base and r["condition"] != "closed_book":
            persuasion.append((r, o["log_odds"] - (base[ctx] - base[mem])))
    conflict_rows = [r for r, _ in conflict]
    return {
        "n_probes": len(rows),
        "accuracy": _rate([o["correct"] for _, o in scored]),
        "accuracy_normalized": _rate([o["correct_normalized"] for _, o in scored]),
        "memorized_rate": _rate(
            [o["chose_memorized"] for r, o in zip(rows, outcomes, strict=True) if r["memorized"] is not None]
        ),
        "cfr": _rate([o["follows_context"] for _, o in conflict]),
        "memorization_ratio": _bootstrapped(
            choices.reshape(-1, 2), _clusters(conflict_rows), lambda c: memorization_ratio(c[:, 0], c[:, 1])
        ),
        "soft_memorization_ratio": _bootstrapped(
            np.array([o["soft_mr"] for _, o in conflict]), _clusters(conflict_rows)
        ),
        "persuasion": _bootstrapped(np.array([p for _, p in persuasion]), _clusters([r for r, _ in persuasion])),
    }


def _groups(records: Iterable[dict[str, Any]]) -> dict[GroupKey, list[dict[str, Any]]]:
    groups: dict[GroupKey, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["family"], r["condition"], r["k"])].append(r)
    return dict(sorted(groups.items()))


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (family, condition, k): every metric on all items, and on the known items alone."""
    closed_book = closed_books(records)
    rows = []
    for (family, condition, k), group in _groups(records).items():
        known_group = [r for r in group if is_known(closed_book, r)]
        rows.append(
            {
                "family": family,
                "condition": condition,
                "k": k,
                **group_metrics(group, closed_book),
                "n_known": len({_item(r) for r in known_group}),
                "known": group_metrics(known_group, closed_book) if known_group else None,
            }
        )
    return rows


def compare_runs(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Paired comparison of two runs over their common probes (e.g. a quantization level against the
    source): per group, McNemar on correctness with the decision-flip rate, and paired bootstrap
    differences (b - a) of the context-following indicator and of soft M_R."""
    index = {(*_item(r), r["condition"], r["k"]): r for r in b}
    rows = []
    for key, group in _groups(a).items():
        pairs = [(r, index.get((*_item(r), r["condition"], r["k"]))) for r in group]
        pairs = [(x, y) for x, y in pairs if y is not None and x["candidates"] == y["candidates"]]
        if not pairs:
            continue
        ox, oy = [outcome(x) for x, _ in pairs], [outcome(y) for _, y in pairs]
        clusters = _clusters([x for x, _ in pairs])
        row: dict[str, Any] = {"family": key[0], "condition": key[1], "k": key[2], "n_paired": len(pairs)}
        if ox[0]["correct"] is not None:
            row["mcnemar"] = mcnemar_test(np.array([o["correct"] for o in ox]), np.array([o["correct"] for o in oy]))
        if "follows_context" in ox[0]:
            for metric in ("follows_context", "soft_mr"):
                row[metric] = paired_bootstrap_difference(
                    np.array([o[metric] for o in ox], dtype=float),
                    np.array([o[metric] for o in oy], dtype=float),
                    clusters=clusters,
                )
        rows.append(row)
    return rows
