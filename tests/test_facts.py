"""The counterfactual-facts family: curated data, conditions, determinism, demonstrations and caching."""

from __future__ import annotations

import os
import re
from collections import defaultdict

import pytest

from phfe.data.facts import CONDITIONS, INSTRUCTION, CounterfactualFacts
from phfe.data.facts_data import RELATIONS, Relation, fill
from phfe.data.probes import Probe
from phfe.tutors import DemonstrationTutor, NoTutor, RuleTutor

CONFLICTING = ("conflicting", "conflicting_instructed", "both_true_first", "both_false_first", "paraphrased")
FUNCTION_WORDS = {"what", "which", "does"}


def question_words(relation: Relation) -> set[str]:
    """The content words of a relation's question: its wording, without the subject."""
    text = relation.question.replace("{subject}", "").replace("Q:", "").replace("A:", "")
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 4 and w not in FUNCTION_WORDS}


def context_of(probe: Probe) -> str:
    return re.search(r"Context: (.*)\n", probe.prompt).group(1)


@pytest.fixture(scope="module")
def probes() -> list[Probe]:
    return CounterfactualFacts(ks=(0, 2, 4)).build(seed=0, tutor=DemonstrationTutor())


def test_curated_facts_are_many_unique_and_short():
    assert 8 <= len(RELATIONS) <= 10
    assert sum(len(r.facts) for r in RELATIONS.values()) >= 400
    for relation in RELATIONS.values():
        subjects = [s for s, _ in relation.facts]
        assert len(subjects) == len(set(subjects)), relation.name
        assert all(1 <= len(a.split()) <= 2 for a in relation.answers), relation.name
        assert len(relation.answers) >= 4, relation.name


def test_templates_format():
    for relation in RELATIONS.values():
        subject, answer = relation.facts[0]
        question = relation.ask(subject)
        assert question.startswith("Q: ") and question.endswith("?\nA:") and subject in question
        for template in (relation.statement, *relation.paraphrases):
            sentence = fill(template, subject, answer)
            assert answer in sentence and subject.lower() in sentence.lower() and "{" not in sentence


def test_paraphrase_templates_avoid_the_question_wording():
    for relation in RELATIONS.values():
        words = question_words(relation)
        assert words, relation.name
        for template in relation.paraphrases:
            assert not any(w in template.lower() for w in words), (relation.name, template)


def test_invented_subjects_are_not_real():
    real = {s.lower() for r in RELATIONS.values() for s, _ in r.facts}
    answers = {a.lower() for r in RELATIONS.values() for a in r.answers}
    for relation in RELATIONS.values():
        assert len(relation.invented) == len(set(relation.invented)) >= 10
        assert not {n.lower() for n in relation.invented} & (real | answers), relation.name


def test_deterministic_by_seed():
    family = CounterfactualFacts(n_items=20)
    assert family.build(3, DemonstrationTutor()) == family.build(3, DemonstrationTutor())
    assert family.build(3, DemonstrationTutor()) != family.build(4, DemonstrationTutor())


def test_counts(probes):
    assert len(probes) == 60 * len(CONDITIONS) * 3
    per_item = defaultdict(list)
    for p in probes:
        per_item[p.item_id, p.k].append(p.condition)
    assert len(per_item) == 60 * 3
    assert all(tuple(conditions) == CONDITIONS for conditions in per_item.values())
    assert len(CounterfactualFacts().build(0, NoTutor())) == 60 * len(CONDITIONS)


def test_memorized_and_in_context_indices(probes):
    for p in probes:
        true, counterfactual = p.meta["true"], p.meta["counterfactual"]
        if p.condition in CONFLICTING:
            assert p.in_context != p.memorized
            assert p.candidates[p.in_context] != p.candidates[p.memorized]
            assert (p.candidates[p.memorized], p.candidates[p.in_context]) == (f" {true}", f" {counterfactual}")
        elif p.condition == "closed_book":
            assert p.in_context is None and p.candidates[p.memorized] == f" {true}"
        elif p.condition == "congruent":  # the one condition where the context agrees with memory
            assert p.in_context == p.memorized and p.candidates[p.memorized] == f" {true}"
        else:
            assert p.condition == "invented" and p.memorized is None
            assert p.candidates[p.in_context] == f" {p.meta['stated']}"


def test_candidates_distinct_type_matched_and_fixed_per_item(probes):
    candidates = defaultdict(set)
    for p in probes:
        relation = RELATIONS[p.meta["relation"]]
        assert p.template_id == relation.name
        assert len(p.candidates) == len(set(p.candidates)) == 4
        assert all(c.startswith(" ") and c[1:] in relation.answers for c in p.candidates)
        candidates[p.item_id].add(p.candidates)
    assert all(len(c) == 1 for c in candidates.values())


def test_contexts_state_the_condition(probes):
    for p in probes:
        relation = RELATIONS[p.meta["relation"]]
        true, cf = p.meta["true"], p.meta["counterfactual"]
        assert p.prompt.endswith(relation.ask(p.entity))
        assert (INSTRUCTION in p.prompt) == (p.condition == "conflicting_instructed")
        if p.condition == "closed_book":
            assert "Context:" not in p.prompt
            continue
        context = context_of(p)
        expected = {
            "congruent": relation.state(p.entity, true or ""),
            "conflicting": relation.state(p.entity, cf or ""),
            "conflicting_instructed": relation.state(p.entity, cf or ""),
            "both_true_first": f"{relation.state(p.entity, true or '')} {relation.state(p.entity, cf or '')}",
            "both_false_first": f"{relation.state(p.entity, cf or '')} {relation.state(p.entity, true or '')}",
            "invented": relation.state(p.entity, p.meta.get("stated", "")),
        }
        if p.condition in expected:
            assert context == expected[p.condition], p.condition
        else:
            assert cf in context and context != relation.state(p.entity, cf)


def test_paraphrased_context_avoids_the_question_wording(probes):
    for p in probes:
        if p.condition == "paraphrased":
            rest = context_of(p).lower().replace(p.entity.lower(), "").replace(p.meta["counterfactual"].lower(), "")
            assert not any(w in rest for w in question_words(RELATIONS[p.meta["relation"]])), context_of(p)


def test_invented_subjects_differ_from_the_item(probes):
    real = {s for r in RELATIONS.values() for s, _ in r.facts}
    for p in probes:
        if p.condition == "invented":
            assert p.entity in RELATIONS[p.meta["relation"]].invented and p.entity not in real
        else:
            assert p.item_id == f"{p.meta['relation']}:{p.entity}"


def test_demonstrations_are_a_shared_prefix_without_the_items_fact(probes):
    prefixes = {}
    for k in (0, 2, 4):
        prompts = [p.prompt for p in probes if p.k == k]
        prefix = os.path.commonprefix(prompts)
        prefix = prefix[: prefix.rfind("\n\n") + 2] if k else ""
        assert all(prompt.startswith(prefix) for prompt in prompts)
        assert prefix.count("Q: ") == k
        prefixes[k] = prefix
    assert prefixes[4].startswith(prefixes[2])
    demonstrated = prefixes[4]
    for p in probes:
        if p.condition == "closed_book":
            assert RELATIONS[p.meta["relation"]].ask(p.entity) not in demonstrated


def test_demonstration_pool_is_disjoint_from_items():
    family = CounterfactualFacts(ks=(16,))
    probes = family.build(1, DemonstrationTutor())
    pool = probes[0].prompt[: probes[0].prompt.rindex("\n\n") + 2]
    assert pool.count("Q: ") == 16
    for p in probes:
        if p.condition == "closed_book":
            assert p.prompt[len(pool) :] == RELATIONS[p.meta["relation"]].ask(p.entity)
            assert RELATIONS[p.meta["relation"]].ask(p.entity) not in pool


def test_rule_tutor_states_the_conditions_statement():
    probes = CounterfactualFacts(n_items=10).build(0, RuleTutor())
    for p in probes:
        if p.condition == "closed_book":
            assert p.prompt.startswith("Q: ")
        else:
            assert p.prompt.startswith(context_of(p) + "\n")


def test_items_balanced_across_chosen_relations():
    probes = CounterfactualFacts(n_items=30, relations=("capital", "animal_class", "moon_planet")).build(0, NoTutor())
    counts = defaultdict(int)
    for p in probes:
        counts[p.template_id] += p.condition == "closed_book"
    assert counts == {"capital": 10, "animal_class": 10, "moon_planet": 10}
    invented = {p.entity for p in probes if p.condition == "invented"}
    assert len(invented) == 30  # distinct while a relation's invented subjects last


def test_invalid_settings_raise():
    with pytest.raises(ValueError):
        CounterfactualFacts(relations=("nope",))
    with pytest.raises(ValueError):
        CounterfactualFacts(ks=(17,))
    with pytest.raises(ValueError):
        CounterfactualFacts(relations=("moon_planet",), n_distractors=4)
    with pytest.raises(ValueError):
        CounterfactualFacts(n_items=1000).build(0, NoTutor())


def test_cached_probes_round_trip(tmp_path):
    family = CounterfactualFacts(n_items=12, ks=(0, 4))
    built = family.build(5, DemonstrationTutor())
    first = family.probes(5, DemonstrationTutor(), cache_dir=tmp_path)
    assert list((tmp_path / "probes").iterdir())
    assert family.probes(5, DemonstrationTutor(), cache_dir=tmp_path) == first == built
