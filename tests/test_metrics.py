"""Metrics against hand-computed values on small fixtures of records."""

from __future__ import annotations

import math

import pytest

from phfe.eval.metrics import closed_books, compare_runs, is_known, outcome, summarize


def rec(item: str, condition: str, logprobs: list[float], memorized: int | None, in_context: int | None, **kw):
    """A record as the evaluator writes it (winners from the log-likelihoods; one token per candidate)."""
    target = in_context if in_context is not None else memorized
    candidates = kw.pop("candidates", [" A", " B", " C"][: len(logprobs)])
    return {
        "family": kw.pop("family", "facts"),
        "item_id": item,
        "condition": condition,
        "k": kw.pop("k", 0),
        "seed": kw.pop("seed", 0),
        "template_id": kw.pop("template_id", "capital"),
        "entity": item,
        "candidates": candidates,
        "logprobs": logprobs,
        "n_tokens": kw.pop("n_tokens", [1] * len(logprobs)),
        "memorized": memorized,
        "in_context": in_context,
        "target": target,
        "winner": max(range(len(logprobs)), key=logprobs.__getitem__),
        "winner_normalized": kw.pop("winner_normalized", max(range(len(logprobs)), key=logprobs.__getitem__)),
    }


# Three items; candidate 0 is the memorized answer, 1 the counterfactual, 2 a distractor.
RECORDS = [
    rec("x", "closed_book", [-1.0, -3.0, -4.0], 0, None),  # knows x
    rec("y", "closed_book", [-2.0, -1.0, -5.0], 0, None),  # does not know y
    rec("z", "closed_book", [-0.5, -2.5, -3.0], 0, None),  # knows z
    rec("x", "conflicting", [-2.0, -1.0, -4.0], 0, 1),  # follows the context
    rec("y", "conflicting", [-3.0, -0.5, -5.0], 0, 1),  # follows the context
    rec("z", "conflicting", [-1.0, -2.0, -0.5], 0, 1),  # memorized beats context, distractor wins
]


def by_condition(rows: list[dict]) -> dict[str, dict]:
    return {row["condition"]: row for row in rows}


def test_outcome_of_one_probe() -> None:
    o = outcome(RECORDS[3])
    assert o["correct"] and o["follows_context"] and o["chose_in_context"] and not o["chose_memorized"]
    assert o["log_odds"] == pytest.approx(1.0)
    assert o["soft_mr"] == pytest.approx(1 / (1 + math.exp(1.0)))
    assert "follows_context" not in outcome(RECORDS[0])  # closed book teaches nothing


def test_summary_values_by_hand() -> None:
    rows = by_condition(summarize(RECORDS))
    closed, conflicting = rows["closed_book"], rows["conflicting"]
    assert closed["accuracy"]["value"] == pytest.approx(2 / 3) and closed["accuracy"]["n"] == 3
    assert closed["cfr"]["n"] == 0  # no conflict in closed book
    assert conflicting["accuracy"]["value"] == pytest.approx(2 / 3)
    assert closed["memorized_rate"]["value"] == pytest.approx(2 / 3) and conflicting["memorized_rate"]["value"] == 0
    assert conflicting["cfr"]["value"] == pytest.approx(2 / 3)
    # winners: x -> in-context, y -> in-context, z -> distractor: p_o = 0, p_s = 2/3 -> M_R = 0
    assert conflicting["memorization_ratio"]["value"] == pytest.approx(0.0)
    soft = [1 / (1 + math.exp(1.0)), 1 / (1 + math.exp(2.5)), 1 / (1 + math.exp(-1.0))]
    assert conflicting["soft_memorization_ratio"]["value"] == pytest.approx(sum(soft) / 3)
    # persuasion: log-odds (ctx - mem) in context minus closed book: x: 1 - (-2) = 3; y: 2.5 - 1 = 1.5;
    # z: -1 - (-2) = 1
    assert conflicting["persuasion"]["value"] == pytest.approx((3 + 1.5 + 1) / 3)
    assert conflicting["n_known"] == 2
    assert conflicting["known"]["cfr"]["value"] == pytest.approx(1 / 2)  # x follows, z does not


def test_intervals_are_attached() -> None:
    cfr = by_condition(summarize(RECORDS))["conflicting"]["cfr"]
    assert cfr["low"] < cfr["value"] < cfr["high"]


def test_memorization_ratio_counts_only_the_two_answers() -> None:
    records = [
        rec("a", "conflicting", [-1.0, -2.0], 0, 1),  # memorized wins
        rec("b", "conflicting", [-1.0, -2.0], 0, 1),  # memorized wins
        rec("c", "conflicting", [-2.0, -1.0], 0, 1),  # in-context wins
    ]
    assert by_condition(summarize(records))["conflicting"]["memorization_ratio"]["value"] == pytest.approx(2 / 3)


def test_known_items_and_the_normalized_accuracy() -> None:
    closed = closed_books(RECORDS)
    assert [r["item_id"] for r in RECORDS[3:] if is_known(closed, r)] == ["x", "z"]
    records = [rec("a", "closed_book", [-2.0, -1.5], 0, None, n_tokens=[4, 1], winner_normalized=0)]
    row = by_condition(summarize(records))["closed_book"]
    assert row["accuracy"]["value"] == 0.0 and row["accuracy_normalized"]["value"] == 1.0


def test_groups_by_family_condition_and_k() -> None:
    records = [rec("a", "gold", [-1.0, -2.0], 0, 0, k=k, family="labels") for k in (0, 4)]
    rows = summarize(records)
    assert [(r["family"], r["condition"], r["k"]) for r in rows] == [("labels", "gold", 0), ("labels", "gold", 4)]
    assert rows[0]["cfr"]["n"] == 0  # in-context == memorized: no conflict to follow


def test_paired_comparison_of_two_runs() -> None:
    flipped = [dict(r) for r in RECORDS]
    flipped[3] = rec("x", "conflicting", [-1.0, -2.0, -4.0], 0, 1)  # x now sticks to memory
    rows = {r["condition"]: r for r in compare_runs(RECORDS, flipped)}
    test = rows["conflicting"]["mcnemar"]
    assert test["b"] + test["c"] == 1 and test["flip_rate"] == pytest.approx(1 / 3)
    assert rows["conflicting"]["follows_context"]["difference"] == pytest.approx(-1 / 3)
    assert rows["closed_book"]["n_paired"] == 3


def test_a_zero_shot_baseline_serves_every_k() -> None:
    records = [
        rec("q", "closed_book", [-1.0, -2.0], 0, None, family="labels"),
        *(rec("q", "flipped", [-1.5, -1.0], 0, 1, k=k, family="labels") for k in (2, 4)),
    ]
    rows = {(r["condition"], r["k"]): r for r in summarize(records)}
    assert rows[("flipped", 4)]["n_known"] == 1
    assert rows[("flipped", 4)]["persuasion"]["value"] == pytest.approx(0.5 - (-1.0))


def test_seeds_keep_items_apart() -> None:
    records = [
        rec("a", "closed_book", [-1.0, -2.0], 0, None, seed=0),  # known under seed 0
        rec("a", "closed_book", [-2.0, -1.0], 0, None, seed=1),  # not under seed 1
        rec("a", "conflicting", [-1.5, -1.0], 0, 1, seed=0),
        rec("a", "conflicting", [-1.5, -1.0], 0, 1, seed=1),
    ]
    conflicting = {r["condition"]: r for r in summarize(records)}["conflicting"]
    assert conflicting["n_known"] == 1 and conflicting["persuasion"]["n"] == 2
