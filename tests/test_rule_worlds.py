"""Family 3, counterfactual rule worlds: determinism, the base filter, arithmetic, checks and demonstrations."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest

from phfe.data.probes import Probe
from phfe.data.rule_worlds import MAX_DEMONSTRATIONS, WORLDS, RuleWorlds, shift_letters, to_base
from phfe.tutors import DemonstrationTutor, NoTutor, RuleTutor

BASES = {"base8": 8, "base9": 9, "base11": 11, "base16": 16}


@pytest.fixture(scope="module")
def probes() -> list[Probe]:
    return RuleWorlds().build(0, DemonstrationTutor())


def tasks(probes: list[Probe], world: str) -> list[Probe]:
    return [p for p in probes if p.condition == world]


def test_default_counts(probes: list[Probe]) -> None:
    family = RuleWorlds()
    assert len(probes) == len(WORLDS) * (family.n_items + family.n_checks) * len(family.ks) == 1152
    counts = Counter((p.condition, p.k) for p in probes)
    for world in WORLDS:
        for k in family.ks:
            assert counts[world, k] == family.n_items
            assert counts[f"{world}_check", k] == family.n_checks
    assert len({p.item_id for p in probes}) == len(WORLDS) * (family.n_items + family.n_checks)


def test_deterministic_by_seed(probes: list[Probe]) -> None:
    assert RuleWorlds().build(0, DemonstrationTutor()) == probes
    other = RuleWorlds().build(1, DemonstrationTutor())
    assert [p.prompt for p in other] != [p.prompt for p in probes]


def test_in_context_and_memorized_answers_differ_and_candidates_are_distinct(probes: list[Probe]) -> None:
    for p in probes:
        assert (p.in_context, p.memorized) == (0, 1)
        assert p.candidates[0] != p.candidates[1]
        assert len(set(p.candidates)) == len(p.candidates)
        assert p.candidates[0] == f" {p.meta['world_answer']}" and p.candidates[1] == f" {p.meta['default_answer']}"
        if not p.meta["check"]:  # task candidates are length-matched
            assert len({len(c) for c in p.candidates}) == 1, p.candidates


@pytest.mark.parametrize("world", sorted(BASES))
def test_base_arithmetic_is_right_and_filtered(probes: list[Probe], world: str) -> None:
    base = BASES[world]
    for p in tasks(probes, world):
        a, b = p.meta["operands"]
        assert p.prompt.endswith(f"In base {base}, {a} + {b} =")
        assert (a + b).isdigit() and all(int(d) < base for d in a + b)
        assert int(p.meta["world_answer"], base) == int(a, base) + int(b, base)
        assert p.meta["world_answer"] == p.meta["world_answer"].upper()
        assert int(p.meta["default_answer"]) == int(a) + int(b)
        assert p.meta["world_answer"] != p.meta["default_answer"]
        assert all(re.fullmatch(r" [1-9][0-9A-F]*", c) for c in p.candidates)


@pytest.mark.parametrize("world", sorted(BASES))
def test_base_check_asks_for_the_successor(probes: list[Probe], world: str) -> None:
    base = BASES[world]
    for p in [p for p in probes if p.condition == f"{world}_check"]:
        number = re.search(r"the number after (\w+) is$", p.prompt).group(1)
        assert int(p.meta["world_answer"], base) == int(number, base) + 1
        assert p.meta["default_answer"] == str(int(number) + 1)


def test_to_base_inverts_int() -> None:
    for base in (2, 8, 9, 11, 16):
        for number in range(0, 600, 7):
            assert int(to_base(number, base), base) == number


def test_shifted_alphabet(probes: list[Probe]) -> None:
    for p in tasks(probes, "shifted_alphabet"):
        word = p.entity
        assert p.candidates[:2] == (" " + " ".join(shift_letters(word, 1)), " " + " ".join(word))
        assert all(re.fullmatch(r"( [a-z]){3}", c) for c in p.candidates)
    assert shift_letters("xyz", 1) == "yza" and shift_letters("abc", -1) == "zab"
    check = next(p for p in probes if p.condition == "shifted_alphabet_check")
    assert check.candidates == (f" {shift_letters(check.entity, 1)}", f" {check.entity}")


def test_shift_setting() -> None:
    probes = RuleWorlds(worlds=("shifted_alphabet",), shift=3, ks=(0,), n_items=5).build(0, NoTutor())
    assert all("shifted forward by three" in p.prompt for p in probes)
    assert all(p.meta["world_answer"].replace(" ", "") == shift_letters(p.entity, 3) for p in probes)


def test_zero_based_positions(probes: list[Probe]) -> None:
    for p in tasks(probes, "zero_based"):
        words, position = p.meta["list"], p.meta["position"]
        assert (p.meta["world_answer"], p.meta["default_answer"]) == (words[position], words[position - 1])
        assert sorted(p.candidates) == sorted(f" {w}" for w in words)
    for p in [p for p in probes if p.condition == "zero_based_check"]:
        assert p.meta["list"].index(p.entity) == int(p.meta["world_answer"]) == int(p.meta["default_answer"]) - 1


def test_comprehension_checks_per_world(probes: list[Probe]) -> None:
    checks = [p for p in probes if p.meta["check"]]
    assert {p.condition for p in checks} == {f"{w}_check" for w in WORLDS}
    assert all(p.meta["world"] == p.condition.removesuffix("_check") for p in checks)
    assert all(len(p.candidates) == 2 for p in checks)
    assert all(p.meta["world"] == p.condition for p in probes if not p.meta["check"])


def test_demonstrations_are_a_shared_fixed_prefix(probes: list[Probe]) -> None:
    teaching: dict[tuple[str, int], set[str]] = defaultdict(set)
    question = {p.item_id: p.prompt for p in probes if p.k == 0}
    for p in probes:
        assert p.prompt.endswith(question[p.item_id])
        teaching[p.meta["world"], p.k].add(p.prompt.removesuffix(question[p.item_id]))
    for world in WORLDS:
        texts = [teaching[world, k] for k in (0, 2, 4, 8)]
        assert all(len(t) == 1 for t in texts)  # every item of a world sees the same demonstrations
        texts = [t.pop() for t in texts]
        assert texts[0] == ""
        assert all(texts[i + 1].startswith(texts[i]) for i in range(3))
        assert [len(t.splitlines()) for t in texts] == [0, 2, 4, 8]


def test_demonstrations_are_solved_items_not_test_items() -> None:
    family = RuleWorlds(ks=(MAX_DEMONSTRATIONS,), n_items=20, n_checks=2)
    for p in family.build(3, DemonstrationTutor()):
        *demonstrations, question = p.prompt.split("\n")
        assert len(demonstrations) == MAX_DEMONSTRATIONS
        assert all(not line.startswith(question + " ") for line in demonstrations)


def test_rule_tutor_states_the_rule() -> None:
    probes = RuleWorlds(ks=(0,), n_items=2, n_checks=1).build(0, RuleTutor())
    rules = {p.meta["world"]: p.prompt.split("\n")[0] for p in probes}
    assert rules["base9"] == "Numbers are written in base 9."
    assert rules["base16"] == "Numbers are written in base 16. The digits are 0 to 9 and then A B C D E F."
    assert "counted from 0" in rules["zero_based"] and "one place later" in rules["shifted_alphabet"]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="ks"):
        RuleWorlds(ks=(MAX_DEMONSTRATIONS + 1,))
    with pytest.raises(ValueError, match="unknown rule world"):
        RuleWorlds(worlds=("base7",))
    with pytest.raises(ValueError, match="shift"):
        RuleWorlds(shift=13)
    with pytest.raises(ValueError, match="distinct"):
        RuleWorlds(worlds=("base8",), n_checks=9).build(0, NoTutor())


def test_probes_round_trip_through_the_cache(tmp_path) -> None:
    family = RuleWorlds(n_items=3, n_checks=2, ks=(0, 2))
    first = family.probes(0, DemonstrationTutor(), cache_dir=tmp_path)
    assert first == family.build(0, DemonstrationTutor())
    assert family.probes(0, DemonstrationTutor(), cache_dir=tmp_path) == first
