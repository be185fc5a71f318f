"""Family 2, flipped and arbitrary labels: balanced demonstrations, exact flips, nonce mappings, k-prefixes."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from phfe.data.labels import CONDITIONS, MAX_K, NEGATIVE, POSITIVE, TASKS, FlippedLabels
from phfe.data.probes import Probe
from phfe.tutors import DemonstrationTutor, NoTutor, RuleTutor


@pytest.fixture(scope="module")
def probes() -> list[Probe]:
    return FlippedLabels().build(0, DemonstrationTutor())


def teaching(p: Probe) -> str:
    return p.prompt[: p.prompt.rindex("Input: ")]


def query(p: Probe) -> str:
    return p.prompt[p.prompt.rindex("Input: ") :]


def test_deterministic_by_seed(probes: list[Probe]) -> None:
    assert FlippedLabels().build(0, DemonstrationTutor()) == probes
    other = FlippedLabels().build(1, DemonstrationTutor())
    assert [p.prompt for p in other] != [p.prompt for p in probes]


def test_default_counts(probes: list[Probe]) -> None:
    per_cell = len(TASKS) * 12 * 2  # tasks x queries x order seeds
    counts = Counter((p.condition, p.k) for p in probes)
    expected = {("closed_book", 0): per_cell} | {(c, k): per_cell for c in CONDITIONS for k in (1, 2, 4, 8)}
    assert counts == expected
    assert len(probes) == 17 * per_cell == 1632
    assert len({(p.item_id, p.condition, p.k) for p in probes}) == len(probes)


def test_queries_balanced_and_shared_by_order_seeds(probes: list[Probe]) -> None:
    baseline = [p for p in probes if p.k == 0]
    for task in TASKS:
        for order_seed in (0, 1):
            labels = Counter(
                p.meta["label"] for p in baseline if p.meta["task"] == task and p.meta["order_seed"] == order_seed
            )
            assert sorted(labels.values()) == [6, 6]
        queries = defaultdict(set)
        for p in baseline:
            if p.meta["task"] == task:
                queries[p.meta["order_seed"]].add(p.prompt)
        assert queries[0] == queries[1] and len(queries[0]) == 12


def test_candidates_and_indices(probes: list[Probe]) -> None:
    for p in probes:
        task = TASKS[p.meta["task"]]
        words = [c.strip() for c in p.candidates]
        assert all(c.startswith(" ") for c in p.candidates) and len(set(words)) == 2
        true = task.labels.index(p.meta["label"])
        if p.condition == "nonce":
            assert not set(words) & set(task.labels)
            assert p.memorized is None and p.in_context == true
            continue
        assert tuple(words) == task.labels and p.memorized == true
        if p.condition == "closed_book":
            assert p.k == 0 and p.in_context is None  # the zero-shot baseline
        elif p.condition == "gold":
            assert p.in_context == true  # gold alone may teach the memorized answer
        elif p.condition == "flipped":
            assert p.in_context == 1 - true and p.candidates[p.in_context] != p.candidates[p.memorized]
        else:
            assert p.in_context is None


def test_demonstrations_balanced_and_labelled_by_condition(probes: list[Probe]) -> None:
    for p in probes:
        demo, shown = p.meta["demo_labels"], p.meta["shown_labels"]
        assert len(demo) == len(shown) == 2 * p.k == teaching(p).count("\nLabel: ")
        assert sorted(Counter(demo).values()) == ([p.k, p.k] if p.k else [])
        for j in range(0, len(demo), 2):
            assert demo[j] != demo[j + 1]  # pairs hold one of each class
        assert [line.split("Label: ")[1] for line in teaching(p).split("\n") if line.startswith("Label: ")] == shown
        changed = sum(d != s for d, s in zip(demo, shown, strict=True))
        if p.condition == "gold":
            assert changed == 0
        elif p.condition == "flipped":
            assert changed == len(demo)
        elif p.condition == "random":
            assert changed == p.k  # exactly half of 2k
            assert all((demo[j] != shown[j]) + (demo[j + 1] != shown[j + 1]) == 1 for j in range(0, len(demo), 2))


def test_random_flips_each_class_equally(probes: list[Probe]) -> None:
    for p in probes:
        if p.condition == "random" and p.k % 2 == 0:
            pairs = zip(p.meta["demo_labels"], p.meta["shown_labels"], strict=True)
            flipped = Counter(true for true, shown in pairs if true != shown)
            assert sorted(flipped.values()) == [p.k // 2, p.k // 2]


def test_pair_order_is_seeded(probes: list[Probe]) -> None:
    firsts = {tuple(p.meta["demo_labels"][::2]) for p in probes if p.condition == "gold" and p.k == 8}
    assert len({label for first in firsts for label in first}) == 2 * len(TASKS)  # both classes lead some pair


def test_nonce_mapping_consistent(probes: list[Probe]) -> None:
    mappings: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for p in probes:
        if p.condition == "nonce":
            mappings[p.meta["task"]] |= set(zip(p.meta["demo_labels"], p.meta["shown_labels"], strict=True))
            mapping = dict(zip(p.meta["demo_labels"], p.meta["shown_labels"], strict=True))
            if p.meta["label"] in mapping:
                assert p.candidates[p.in_context] == " " + mapping[p.meta["label"]]
    for task, pairs in mappings.items():
        assert len(pairs) == 2 and len({t for t, _ in pairs}) == len({n for _, n in pairs}) == 2, task


def test_k_prefix_and_shared_demonstrations(probes: list[Probe]) -> None:
    by_item = {(p.item_id, p.condition, p.k): p for p in probes}
    for (item, condition, k), p in by_item.items():
        if (item, condition, 2 * k) in by_item:
            assert teaching(by_item[item, condition, 2 * k]).startswith(teaching(p))
    shared = defaultdict(set)
    for p in probes:
        shared[p.meta["task"], p.meta["order_seed"], p.condition, p.k].add(teaching(p))
    assert all(len(t) == 1 for t in shared.values())  # every query of a cell has the same demonstrations
    inputs = {c: {teaching(p) for p in probes if p.condition == c and p.k == 8} for c in CONDITIONS}
    strip = {c: {line for t in ts for line in t.split("\n") if line.startswith("Input:")} for c, ts in inputs.items()}
    assert strip["gold"] == strip["random"] == strip["flipped"] == strip["nonce"]  # same inputs, other labels


def test_demonstrations_never_show_a_query(probes: list[Probe]) -> None:
    for task in TASKS:
        queries = {query(p).split("\n")[0] for p in probes if p.meta["task"] == task}
        demos = {line for p in probes if p.meta["task"] == task for line in teaching(p).split("\n")}
        assert not queries & demos
        if task == "sentiment":
            words = {q.rstrip(".").split()[-1] for q in queries}
            assert not any(w in line.split() or f"{w}." in line.split() for w in words for line in demos)


def test_lexicons() -> None:
    assert len(set(POSITIVE)) == len(POSITIVE) >= 60 and len(set(NEGATIVE)) == len(NEGATIVE) >= 60
    assert not set(POSITIVE) & set(NEGATIVE)


def test_up_to_sixteen_per_class_and_json_meta() -> None:
    probes = FlippedLabels(n_items=2, ks=(MAX_K,), order_seeds=1, tasks=("category",)).build(3, DemonstrationTutor())
    assert {len(p.meta["demo_labels"]) for p in probes if p.condition != "closed_book"} == {2 * MAX_K}
    json.dumps([p.meta for p in probes])


def test_rule_and_none_tutors() -> None:
    family = FlippedLabels(n_items=4, order_seeds=1, tasks=("sentiment",))
    none = family.build(0, NoTutor())
    assert {(p.condition, p.k, p.in_context) for p in none} == {("closed_book", 0, None)}
    rule = family.build(0, RuleTutor())
    # random has no mapping to state; the closed-book baseline stays
    assert Counter(p.condition for p in rule) == {"closed_book": 4, "gold": 4, "flipped": 4, "nonce": 4}
    flipped = next(p for p in rule if p.condition == "flipped")
    assert flipped.prompt.startswith(
        "In this task, positive sentences are labelled negative and negative sentences are labelled positive.\nInput: "
    )
    assert all(p.k == 0 and (p.in_context is not None) == (p.condition != "closed_book") for p in rule)


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        FlippedLabels(ks=(MAX_K + 1,))
    with pytest.raises(ValueError):
        FlippedLabels(conditions=("shuffled",))
    with pytest.raises(ValueError):
        FlippedLabels(n_items=60, tasks=("category",)).build(0, DemonstrationTutor())
