"""Tutors: what each one teaches, and the tutor model's batched explanations."""

from __future__ import annotations

from pathlib import Path

import pytest

from phfe.data.facts import CounterfactualFacts
from phfe.inference import Engine, KVCacheManager
from phfe.models import build_model, load_tokenizer
from phfe.tutors import DemonstrationTutor, Lesson, ModelTutor, NoTutor, RuleTutor
from tests.gguf_factory import TINY_MODELS, write_tiny_model

LESSON = Lesson(rule="The capital of France is Lyon.", demonstrations=("Q: a?\nA: b\n\n", "Q: c?\nA: d\n\n"))


def test_simple_tutors() -> None:
    assert NoTutor().teach(LESSON, k=2) == ""
    assert RuleTutor().teach(LESSON) == "The capital of France is Lyon.\n"
    assert RuleTutor().teach(Lesson()) == ""
    assert DemonstrationTutor().teach(LESSON, k=1) == "Q: a?\nA: b\n\n"
    assert DemonstrationTutor().teach(LESSON, k=2).startswith(DemonstrationTutor().teach(LESSON, k=1))
    with pytest.raises(ValueError, match="asked for 3 demonstrations; the lesson has 2"):
        DemonstrationTutor().teach(LESSON, k=3)


@pytest.fixture(scope="module")
def tutor(tmp_path_factory: pytest.TempPathFactory) -> ModelTutor:
    path = write_tiny_model(tmp_path_factory.mktemp("tutor") / "tiny.gguf", TINY_MODELS["llama"])
    model = build_model(path)
    a = model.args
    cache = KVCacheManager(1024, 16, a.n_layers, a.n_kv_heads, a.head_dim)
    return ModelTutor(Engine(model, load_tokenizer(path, cache_dir=tmp_path_factory.mktemp("tok")), cache), 6)


def test_the_tutor_model_explains_the_rule(tutor: ModelTutor) -> None:
    prompt = tutor.instruction.format(rule=LESSON.rule)
    (expected,) = tutor.backend.generate([prompt], max_new_tokens=6, stop=["\n"])
    assert tutor.teach(LESSON) == f"{LESSON.rule} {expected.strip()}\n"
    assert tutor.teach(Lesson()) == ""
    assert tutor.identity.startswith("model:") and "tiny.gguf" in tutor.identity


def test_a_family_prepares_every_explanation_in_one_batch(tutor: ModelTutor, tmp_path: Path) -> None:
    family = CounterfactualFacts(n_items=4, ks=(0,))
    requests, explained = tutor.backend.stats["requests"], len(tutor._explanations)
    probes = family.probes(seed=0, tutor=tutor, cache_dir=tmp_path)
    assert tutor.backend.stats["requests"] - requests == len(tutor._explanations) - explained > 4
    for p in probes:
        if p.condition == "conflicting":
            statement = p.prompt.split("Context: ")[1].split("\n")[0]
            assert p.prompt.startswith(tutor.teach(Lesson(rule=statement)))
