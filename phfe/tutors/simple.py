"""The tutors that need no model: nothing, the plain rule, or k solved demonstrations."""

from __future__ import annotations

from phfe.tutors.base import Lesson, Tutor


class NoTutor(Tutor):
    """No teaching: the item's own prompt is all the model sees."""

    name = "none"

    def teach(self, lesson: Lesson, k: int = 0) -> str:
        return ""


class RuleTutor(Tutor):
    """States the fact or rule plainly, on a line of its own."""

    name = "rule"

    def teach(self, lesson: Lesson, k: int = 0) -> str:
        return f"{lesson.rule}\n" if lesson.rule else ""


class DemonstrationTutor(Tutor):
    """The first ``k`` solved examples, in the family's fixed order."""

    name = "demonstrations"

    def teach(self, lesson: Lesson, k: int = 0) -> str:
        if k > len(lesson.demonstrations):
            raise ValueError(f"asked for {k} demonstrations; the lesson has {len(lesson.demonstrations)}")
        return "".join(lesson.demonstrations[:k])
