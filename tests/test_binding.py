"""Family 4, pure in-context binding: nonce keys, bound values among the candidates, positions, rebinding."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest

from phfe.data.binding import BLOCKLIST, COLOURS, NONCE_KEYS, Binding, positions
from phfe.data.probes import Probe
from phfe.tutors import DemonstrationTutor, NoTutor, RuleTutor

KEY = re.compile(r"[bdfgklmnprstvz][aiou][bdfgklmnprstvz][iu]")


@pytest.fixture(scope="module")
def probes() -> list[Probe]:
    return Binding().build(0, NoTutor())


def bindings(prompt: str) -> list[tuple[str, str]]:
    """The (key, value) lines of the prompt's last key list, in order."""
    block = prompt.rsplit("Key list:\n", 1)[1].split("Q: ")[0]
    return [tuple(line.split(" = ")) for line in block.splitlines()]


def test_default_counts(probes: list[Probe]) -> None:
    family = Binding()
    assert len(probes) == len(family.values) * len(family.pairs) * family.n_items * 2 == 640
    assert Counter(p.condition for p in probes) == {"bind": 320, "rebinding": 320}
    by_item = defaultdict(list)
    for p in probes:
        by_item[p.item_id].append(p)
    assert len(by_item) == 320
    assert all(sorted(p.condition for p in group) == ["bind", "rebinding"] for group in by_item.values())
    assert all(len({p.entity for p in group}) == 1 for group in by_item.values())


def test_deterministic_by_seed(probes: list[Probe]) -> None:
    assert Binding().build(0, NoTutor()) == probes
    assert [p.prompt for p in Binding().build(1, NoTutor())] != [p.prompt for p in probes]


def test_keys_are_nonce_and_unique_within_a_list(probes: list[Probe]) -> None:
    assert len(NONCE_KEYS) == len(set(NONCE_KEYS)) > 1000
    assert all(KEY.fullmatch(k) and k[:2] != k[2:] and k not in BLOCKLIST for k in NONCE_KEYS)
    assert all(KEY.fullmatch(word) for word in BLOCKLIST)  # every blocked word is one the pattern makes
    for p in probes:
        keys = Counter(k for k, _ in bindings(p.prompt))
        assert set(keys) <= set(NONCE_KEYS)
        repeated = {k for k, n in keys.items() if n > 1}
        assert repeated == ({p.entity} if p.condition == "rebinding" else set())
        assert max(keys.values()) <= 2


def test_bound_value_is_the_in_context_candidate(probes: list[Probe]) -> None:
    for p in probes:
        pairs = bindings(p.prompt)
        assert p.memorized is None and p.in_context == 0
        assert p.prompt.endswith(f"Q: What is {p.entity}?\nA:")
        latest = dict(pairs)[p.entity]  # the later binding wins
        assert p.candidates[p.in_context] == f" {latest}"
        assert sorted(p.candidates) == sorted(f" {v}" for _, v in pairs)  # distractors: the list's other values
        assert len(set(p.candidates)) == len(p.candidates)
        assert p.meta["distance"] == len(pairs) - 1 - max(i for i, (k, _) in enumerate(pairs) if k == p.entity)
        assert pairs[p.meta["index"]][0] == p.entity and len(pairs) == p.meta["pairs"] + (p.condition == "rebinding")


def test_rebinding_overwrites_the_bound_value(probes: list[Probe]) -> None:
    bound = {p.item_id: p.candidates[0] for p in probes if p.condition == "bind"}
    for p in [p for p in probes if p.condition == "rebinding"]:
        assert p.candidates[1] == f" {p.meta['overwritten']}" == bound[p.item_id]
        first, later = (i for i, (k, _) in enumerate(bindings(p.prompt)) if k == p.entity)
        assert first == p.meta["index"] < later == p.meta["rebinding_index"]


def test_values_are_type_matched(probes: list[Probe]) -> None:
    colours = set(COLOURS.split())
    for p in probes:
        if p.template_id == "numbers":
            assert all(re.fullmatch(r" [1-9][0-9]", c) for c in p.candidates)
        else:
            assert p.template_id == "colours" and {c.strip() for c in p.candidates} <= colours


def test_positions_cycle_first_middle_last(probes: list[Probe]) -> None:
    assert positions(2) == {"first": 0, "last": 1}
    assert positions(8) == {"first": 0, "middle": 4, "last": 7}
    for n in (2, 4, 8, 16):
        group = [p for p in probes if p.meta["pairs"] == n and p.condition == "bind"]
        counts = Counter(p.meta["position"] for p in group)
        assert set(counts) == set(positions(n)) and max(counts.values()) - min(counts.values()) <= 2
        assert all(p.meta["index"] == positions(n)[p.meta["position"]] for p in group)


def test_demonstrations_are_a_fixed_prefix_with_other_keys() -> None:
    probes = Binding(ks=(0, 1, 4), n_items=6).build(0, DemonstrationTutor())
    question = {(p.item_id, p.condition): p.prompt for p in probes if p.k == 0}
    teaching = defaultdict(set)
    for p in probes:
        assert p.prompt.endswith(question[p.item_id, p.condition])
        teaching[p.template_id, p.k].add(p.prompt.removesuffix(question[p.item_id, p.condition]))
    for kind in ("numbers", "colours"):
        assert all(len(teaching[kind, k]) == 1 for k in (0, 1, 4))
        zero, one, four = (next(iter(teaching[kind, k])) for k in (0, 1, 4))
        assert zero == "" and four.startswith(one) and four.count("Key list:") == 4
        demo_keys = set(re.findall(r"^(\w+) = ", four, re.MULTILINE))
        assert len(demo_keys) == 8
        assert not demo_keys & {k for p in probes if p.template_id == kind for k, _ in bindings(p.prompt)}


def test_rule_tutor_and_settings() -> None:
    probes = Binding(pairs=(3,), values=("colours",), n_items=3).build(0, RuleTutor())
    assert len(probes) == 6 and all(p.prompt.startswith("Each key stands for") for p in probes)
    with pytest.raises(ValueError, match="pairs"):
        Binding(values=("colours",), pairs=(20,))
    with pytest.raises(ValueError, match="pairs"):
        Binding(pairs=(1,))
    with pytest.raises(ValueError, match="template"):
        Binding(values=("animals",))
    with pytest.raises(ValueError, match="ks"):
        Binding(ks=(9,))


def test_probes_round_trip_through_the_cache(tmp_path) -> None:
    family = Binding(pairs=(2, 4), n_items=3)
    assert family.probes(0, NoTutor(), cache_dir=tmp_path) == family.build(0, NoTutor())
