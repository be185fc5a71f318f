"""What every task family produces: probes, one prompt per item and condition with its candidate answers.

A probe pits the answer pretraining taught (``memorized``) against the answer the prompt teaches
(``in_context``), among type-matched distractors, all scored by log-likelihood. Either may be absent: a
closed-book probe teaches nothing, an invented entity has no prior. Probes travel as ``datasets.Dataset``
rows (see :func:`to_dataset`), cached on disk by family, generator version, seed and settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from phfe.inference.sources import default_cache_dir


@dataclass(frozen=True)
class Probe:
    """One prompt to score: the text before the answer, and the answers to compare."""

    family: str
    item_id: str  # the underlying item: the same across its conditions (and k)
    condition: str  # e.g. "closed_book", "congruent", "conflicting"
    prompt: str
    candidates: tuple[str, ...]  # continuations exactly as scored (with their leading space, if any)
    memorized: int | None  # index of the answer pretraining taught; None: no prior possible
    in_context: int | None  # index of the answer this prompt teaches; None: it teaches none
    template_id: str = ""
    entity: str = ""
    seed: int = 0
    k: int = 0  # demonstrations in the prompt
    meta: dict[str, Any] = field(default_factory=dict)  # family-specific facts (JSON-serializable)

    @property
    def target(self) -> int | None:
        """The answer counted as right: what the prompt teaches, else what was memorized."""
        return self.in_context if self.in_context is not None else self.memorized

    def __post_init__(self) -> None:
        for name in ("memorized", "in_context"):
            index = getattr(self, name)
            if index is not None and not 0 <= index < len(self.candidates):
                raise ValueError(f"probe {self.item_id}/{self.condition}: {name} index {index} out of range")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"probe {self.item_id}/{self.condition}: duplicate candidates {self.candidates}")


def to_dataset(probes: Sequence[Probe]) -> datasets.Dataset:
    """Probes as a ``datasets.Dataset`` (``meta`` as a JSON string column)."""
    rows = [dataclasses.asdict(p) | {"meta": json.dumps(p.meta, sort_keys=True)} for p in probes]
    columns = {f.name: [row[f.name] for row in rows] for f in dataclasses.fields(Probe)}
    return datasets.Dataset.from_dict(columns)


def from_dataset(dataset: datasets.Dataset) -> list[Probe]:
    """The inverse of :func:`to_dataset`."""
    return [
        Probe(**{**row, "candidates": tuple(row["candidates"]), "meta": json.loads(row["meta"])}) for row in dataset
    ]


def cached_probes(
    key: dict[str, Any], build: Callable[[], Sequence[Probe]], cache_dir: str | os.PathLike[str] | None = None
) -> list[Probe]:
    """The probes ``build`` makes, saved under ``<cache>/probes/<hash of key>`` and read back next time.

    ``key`` must name everything the probes depend on (family, generator version, seed, sizes, tutor...).
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = Path(cache_dir or default_cache_dir()) / "probes" / f"{key.get('family', 'probes')}-{digest}"
    if path.exists():
        return from_dataset(datasets.load_from_disk(str(path)))
    probes = list(build())
    partial = path.with_name(path.name + f".partial-{os.getpid()}")
    quiet = not datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a bar per family would only clutter the run's output
    try:
        to_dataset(probes).save_to_disk(str(partial))
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    try:
        os.replace(partial, path)
    except OSError:  # another process saved the same probes first
        shutil.rmtree(partial, ignore_errors=True)
    return probes
