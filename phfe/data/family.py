"""The interface of a task family: a seeded generator of probes, cached on disk."""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod

from phfe.data.probes import Probe, cached_probes
from phfe.tutors.base import LessonRecorder, Tutor


@dataclasses.dataclass
class Family(ABC):
    """A family makes the probes of its conditions for ``n_items`` items; same seed, same probes.

    Subclasses are dataclasses whose fields are their settings (all of them part of the cache key), set
    ``name`` and ``version`` (bump it whenever the generated probes change), and implement :meth:`build`.
    """

    name = "family"
    version = 1

    n_items: int = 40

    @abstractmethod
    def build(self, seed: int, tutor: Tutor) -> list[Probe]:
        """All probes of all conditions, deterministic in ``seed`` (and the tutor's teaching)."""

    def probes(self, seed: int, tutor: Tutor, cache_dir: str | os.PathLike[str] | None = None) -> list[Probe]:
        """:meth:`build`, cached by family, version, settings, seed and tutor."""
        key = {
            "family": self.name,
            "version": self.version,
            "settings": dataclasses.asdict(self),
            "seed": seed,
            "tutor": getattr(tutor, "identity", tutor.name),
        }
        return cached_probes(key, lambda: self._build_prepared(seed, tutor), cache_dir)

    def _build_prepared(self, seed: int, tutor: Tutor) -> list[Probe]:
        prepare = getattr(tutor, "prepare", None)
        if prepare is not None:  # a tutor that generates: a dry run collects its lessons for one batch
            recorder = LessonRecorder(tutor)
            self.build(seed, recorder)
            prepare(recorder.lessons)
        return self.build(seed, tutor)
