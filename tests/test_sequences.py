"""Family 5, prior-conflicting sequences: strides, shared candidates, the control, demonstrations."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import pairwise

import pytest

from phfe.data.probes import Probe
from phfe.data.sequences import DOMAINS, PriorSequences
from phfe.tutors import DemonstrationTutor, NoTutor, RuleTutor


@pytest.fixture(scope="module")
def probes() -> list[Probe]:
    return PriorSequences().build(0, NoTutor())


def position(domain: str, element: str) -> int:
    return DOMAINS[domain].elements.index(element.strip())


def step(domain: str, a: str, b: str) -> int:
    """How far ``b`` is after ``a`` (modulo the cycle)."""
    d = DOMAINS[domain]
    diff = position(domain, b) - position(domain, a)
    return diff % len(d.elements) if d.cyclic else diff


def test_deterministic_by_seed(probes: list[Probe]) -> None:
    assert PriorSequences().build(0, NoTutor()) == probes
    assert PriorSequences().build(1, NoTutor()) != probes


def test_default_counts(probes: list[Probe]) -> None:
    items = {"months": 12, "weekdays": 7, "letters": 11, "counting": 12}
    assert Counter(p.meta["domain"] for p in probes) == {d: n * 2 * 3 for d, n in items.items()}
    assert len(probes) == 252
    assert Counter(p.condition for p in probes) == {"stride_1": 84, "stride_2": 84, "stride_3": 84}
    assert len({(p.item_id, p.condition, p.k) for p in probes}) == len(probes)


def test_sequences_and_answers(probes: list[Probe]) -> None:
    for p in probes:
        domain, stride, sequence = p.meta["domain"], p.meta["stride"], p.meta["sequence"]
        assert p.condition == f"stride_{stride}" and len(sequence) == p.meta["shown"]
        assert p.prompt == ", ".join(sequence) + ","
        assert all(step(domain, a, b) == stride for a, b in pairwise(sequence))
        assert step(domain, sequence[-1], p.candidates[p.memorized]) == 1
        assert step(domain, sequence[-1], p.candidates[p.in_context]) == stride
        if stride == 1:
            assert p.in_context == p.memorized  # the control alone
        else:
            assert p.candidates[p.in_context] != p.candidates[p.memorized]
        if domain == "counting":
            assert int(sequence[0]) >= 1


def test_candidates_type_matched_and_shared_by_conditions(probes: list[Probe]) -> None:
    by_entity = defaultdict(set)
    for p in probes:
        assert len(p.candidates) == 4 and len(set(p.candidates)) == 4
        assert all(c.startswith(" ") and c.strip() in DOMAINS[p.meta["domain"]].elements for c in p.candidates)
        assert {1, 2, 3} <= set(p.meta["offsets"])
        by_entity[p.meta["domain"], p.entity].add((p.candidates, p.memorized))
    assert all(len(v) == 1 for v in by_entity.values())


def test_demonstrations_prefix_and_fixed_order() -> None:
    probes = PriorSequences(ks=(0, 1, 2, 4)).build(0, DemonstrationTutor())
    by_key = {(p.item_id, p.condition, p.k): p for p in probes}
    teachings = defaultdict(Counter)
    for (item, condition, k), p in by_key.items():
        lines = p.prompt.split("\n")[:-1]
        assert len(lines) == k
        stride, shown = p.meta["stride"], p.meta["shown"]
        for line in lines:
            solved = line.split(", ")
            assert len(solved) == shown + 1 and solved != [*p.meta["sequence"], p.candidates[p.in_context].strip()]
            domain = next(d for d in DOMAINS.values() if solved[0] in d.elements and solved[1] in d.elements)
            assert all(step(domain.name, a, b) == stride for a, b in pairwise(solved))
        if (item, condition, 2 * k) in by_key:
            assert by_key[item, condition, 2 * k].prompt.startswith("".join(line + "\n" for line in lines))
        teachings[condition, shown, k]["\n".join(lines)] += 1
    for counter in teachings.values():
        assert (
            counter.most_common(1)[0][1] >= sum(counter.values()) - 5
        )  # all but items that are one of the 5 demonstrations


def test_rule_tutor() -> None:
    probes = PriorSequences(n_items=2, ks=(0, 2)).build(0, RuleTutor())
    assert {p.k for p in probes} == {0}
    for p in probes:
        assert p.prompt.startswith(f"Each item skips ahead by {p.meta['stride']}.\n")


def test_strides_that_meet_the_prior_are_skipped() -> None:
    probes = PriorSequences(domains=("months", "weekdays"), strides=(2, 8), shown=(3,)).build(0, NoTutor())
    conditions = {d: {p.condition for p in probes if p.meta["domain"] == d} for d in ("months", "weekdays")}
    assert conditions == {"months": {"stride_1", "stride_2", "stride_8"}, "weekdays": {"stride_1", "stride_2"}}
    for p in probes:
        if p.condition != "stride_1":
            assert p.candidates[p.in_context] != p.candidates[p.memorized]


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        PriorSequences(strides=(1,))
    with pytest.raises(ValueError):
        PriorSequences(strides=(8,), shown=(5,))  # no letters sequence fits
    with pytest.raises(ValueError):
        PriorSequences(domains=("weekdays",), n_distractors=4)
    with pytest.raises(ValueError):
        PriorSequences(domains=("weekdays",), strides=(8,))  # 8 days on is the next day
