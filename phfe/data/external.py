"""A researcher's own knowledge-conflict items (CounterFact style) as probes of family 1's core conditions.

Rows come from a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file or a ``datasets`` hub id; a column
mapping names the cloze ``prompt`` ("The mother tongue of Danielle Darrieux is"), the ``answer`` pretraining
taught ("French") and the ``counterfactual`` ("English"); an optional ``subject`` and ``relation`` give the
entity and template used to cluster intervals. Passages state the prompt completed by an answer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import datasets

from phfe.data.family import Family
from phfe.data.probes import Probe
from phfe.tutors.base import Tutor

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
REQUIRED = ("prompt", "answer", "counterfactual")


def load_rows(source: str, split: str = "train") -> datasets.Dataset:
    """Rows of a local file (by extension) or of a ``datasets`` hub id."""
    path = Path(source).expanduser()
    if path.suffix in LOCAL_FORMATS:
        if not path.is_file():
            raise FileNotFoundError(f"items file {str(path)!r} does not exist")
        return datasets.load_dataset(LOCAL_FORMATS[path.suffix], data_files=str(path), split="train")
    return datasets.load_dataset(source, split=split)


@dataclasses.dataclass
class ExternalFacts(Family):
    """Knowledge-conflict probes from a user's items: closed book, congruent and conflicting context (the
    passages are the teaching here; the tutor adds nothing)."""

    name = "external_facts"
    version = 1

    source: str = ""
    split: str = "train"
    columns: dict[str, str] = dataclasses.field(default_factory=lambda: {c: c for c in REQUIRED})
    n_items: int = 0  # 0: every row

    def build(self, seed: int, tutor: Tutor) -> list[Probe]:
        rows = load_rows(self.source, self.split)
        mapping = {**{c: c for c in REQUIRED}, **self.columns}
        missing = [f"{key} -> {column!r}" for key, column in mapping.items() if column not in rows.column_names]
        if missing:
            raise KeyError(f"{self.source}: no column for {', '.join(missing)}; the columns are {rows.column_names}")
        if self.n_items:
            rows = rows.shuffle(seed=seed).select(range(min(self.n_items, len(rows))))
        probes = []
        for index, row in enumerate(rows):
            get = {key: str(row[column]).strip() for key, column in mapping.items()}
            prompt, true, fake = get["prompt"], get["answer"], get["counterfactual"]
            if true == fake:
                continue  # no conflict to measure
            common = dict(
                family=self.name,
                item_id=f"{index}",
                candidates=(f" {true}", f" {fake}"),
                memorized=0,
                template_id=get.get("relation", ""),
                entity=get.get("subject", ""),
                seed=seed,
                meta={"true": true, "counterfactual": fake},
            )
            for condition, answer in (("closed_book", None), ("congruent", true), ("conflicting", fake)):
                context = f"Context: {prompt} {answer}.\n" if answer else ""
                in_context = None if answer is None else (0 if answer == true else 1)
                probes.append(Probe(condition=condition, prompt=context + prompt, in_context=in_context, **common))
        return probes
