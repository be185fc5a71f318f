"""Tutors supply an item's in-context teaching; families say what there is to teach (a :class:`Lesson`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    """What a family offers to teach one item: the fact or rule in plain words, and solved examples in a
    fixed order (k demonstrations are the first k, so k=2 is a prefix of k=4 and prefixes are shared)."""

    rule: str = ""
    demonstrations: tuple[str, ...] = ()


class Tutor(ABC):
    """Turns a lesson into the text placed before an item's question."""

    name: str

    @abstractmethod
    def teach(self, lesson: Lesson, k: int = 0) -> str:
        """The teaching text for ``lesson`` (``k``: how many demonstrations, where that applies)."""


class LessonRecorder(Tutor):
    """Stands in for ``tutor`` during a dry run of a family's build: records every lesson, teaches nothing.
    Lets a tutor that generates (a model) prepare all its teaching in one batch."""

    def __init__(self, tutor: Tutor):
        self.name = tutor.name
        self.lessons: list[Lesson] = []

    def teach(self, lesson: Lesson, k: int = 0) -> str:
        self.lessons.append(lesson)
        return ""


def teachings(tutor: Tutor, lesson: Lesson, ks: Sequence[int], per_k: int = 1) -> dict[int, str]:
    """The tutor's teaching for each k (``per_k`` demonstrations a step), keyed by the k it really shows: a
    tutor whose text does not change with k gives one teaching, at k=0."""
    base = tutor.teach(lesson, 0)
    out: dict[int, str] = {}
    for k in sorted(ks):
        text = tutor.teach(lesson, per_k * k)
        out.setdefault(k if text != base else 0, text)
    return out
