"""Tutors supply an item's in-context teaching; families say what there is to teach (a :class:`Lesson`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
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
