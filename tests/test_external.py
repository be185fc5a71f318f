"""A researcher's own CounterFact-style items, from local files with a column mapping."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from phfe.data.external import ExternalFacts
from phfe.tutors import NoTutor

ROWS = [
    {"q": "The mother tongue of Danielle Darrieux is", "true": "French", "new": "English", "who": "Darrieux"},
    {"q": "The Eiffel Tower is located in", "true": "Paris", "new": "Rome", "who": "Eiffel Tower"},
    {"q": "Toko Yasuda plays the", "true": "guitar", "new": "guitar", "who": "Yasuda"},  # no conflict: skipped
]
MAPPING = {"prompt": "q", "answer": "true", "counterfactual": "new", "subject": "who"}


def write(path: Path) -> Path:
    table = datasets.Dataset.from_list(ROWS)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif path.suffix == ".csv":
        table.to_csv(str(path))
    else:
        table.to_parquet(str(path))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_items_become_probes(tmp_path: Path, suffix: str) -> None:
    family = ExternalFacts(source=str(write(tmp_path / f"items{suffix}")), columns=MAPPING)
    probes = family.build(seed=0, tutor=NoTutor())
    assert len(probes) == 2 * 3
    closed, congruent, conflicting = probes[:3]
    assert closed.prompt == "The mother tongue of Danielle Darrieux is"
    assert closed.candidates == (" French", " English") and closed.memorized == 0 and closed.in_context is None
    assert congruent.prompt.startswith("Context: The mother tongue of Danielle Darrieux is French.\n")
    assert conflicting.in_context == 1 and "is English." in conflicting.prompt and conflicting.entity == "Darrieux"


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    family = ExternalFacts(source=str(write(tmp_path / "items.jsonl")), columns={"prompt": "question"})
    with pytest.raises(KeyError, match=r"prompt -> 'question'.*\['q', 'true', 'new', 'who'\]"):
        family.build(seed=0, tutor=NoTutor())
    with pytest.raises(FileNotFoundError, match="absent.jsonl"):
        ExternalFacts(source=str(tmp_path / "absent.jsonl")).build(seed=0, tutor=NoTutor())


def test_sampling_is_seeded(tmp_path: Path) -> None:
    family = ExternalFacts(source=str(write(tmp_path / "items.jsonl")), columns=MAPPING, n_items=2)
    first = family.build(seed=1, tutor=NoTutor())
    assert family.build(seed=1, tutor=NoTutor()) == first
