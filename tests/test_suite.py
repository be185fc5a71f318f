"""The suite end to end: every family's probes build and score; on a real model the known effects show."""

from __future__ import annotations

from pathlib import Path

import pytest

from phfe.data.facts import CounterfactualFacts
from phfe.data.suite import FAMILIES, default_suite, full_suite, suite_probes
from phfe.eval.evaluator import evaluate
from phfe.eval.metrics import summarize
from phfe.inference import Engine, KVCacheManager
from phfe.models import build_model, load_tokenizer
from phfe.tutors import DemonstrationTutor, NoTutor, RuleTutor
from tests.gguf_factory import TINY_MODELS, write_tiny_model


def test_every_family_is_in_both_suites() -> None:
    for suite in (default_suite(), full_suite()):
        assert {f.name for f in suite} == set(FAMILIES) - {"external_facts"}


@pytest.mark.parametrize("tutor", [NoTutor(), RuleTutor(), DemonstrationTutor()], ids=lambda t: t.name)
def test_the_default_suite_builds_for_every_simple_tutor(tutor, tmp_path: Path) -> None:
    probes = suite_probes(default_suite(), seed=0, tutor=tutor, cache_dir=tmp_path)
    assert {p.family for p in probes} == set(FAMILIES) - {"external_facts"}
    keys = [(p.family, p.item_id, p.condition, p.k) for p in probes]
    assert len(set(keys)) == len(keys)


def test_a_tiny_model_scores_a_sample_of_every_family(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "tiny.gguf", TINY_MODELS["qwen2"])
    model = build_model(path)
    a = model.args
    engine = Engine(
        model, load_tokenizer(path, cache_dir=tmp_path), KVCacheManager(4096, 16, a.n_layers, a.n_kv_heads, a.head_dim)
    )
    probes = suite_probes(default_suite(), seed=1, tutor=DemonstrationTutor(), cache_dir=tmp_path)
    sample = [p for family in FAMILIES for p in [q for q in probes if q.family == family][:6]]
    rows = summarize(evaluate(engine, sample, progress=False))
    assert {r["family"] for r in rows} == {p.family for p in sample}


@pytest.mark.real_model
def test_smollm2_shows_the_known_effects(smollm2_path: Path, tmp_path: Path) -> None:
    """Congruent context >= closed book >= conflicting context, in how often the true answer wins."""
    engine = Engine.from_gguf(smollm2_path, memory_gb=0.3)
    probes = CounterfactualFacts(n_items=24, ks=(4,)).probes(seed=0, tutor=DemonstrationTutor(), cache_dir=tmp_path)
    rows = {r["condition"]: r for r in summarize(evaluate(engine, probes, progress=False))}
    true_rate = {c: rows[c]["memorized_rate"]["value"] for c in ("congruent", "closed_book", "conflicting")}
    assert true_rate["congruent"] >= true_rate["closed_book"] >= true_rate["conflicting"]
    assert true_rate["closed_book"] > 0.5 and rows["conflicting"]["cfr"]["value"] > 0.2
    assert rows["invented"]["accuracy"]["value"] > 0.5  # reading a stated fact with no prior
