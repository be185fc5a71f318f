"""A tutor model: another model loaded by PHFE explains the fact or rule, by greedy generation."""

from __future__ import annotations

from phfe.inference.backend import ScoringBackend
from phfe.tutors.base import Lesson, Tutor

INSTRUCTION = (
    "Explain the following statement in one or two sentences, taking it as true.\nStatement: {rule}\nExplanation:"
)


class ModelTutor(Tutor):
    """Teaches with the rule followed by an explanation that ``backend``'s model writes (cached per rule)."""

    name = "model"

    def __init__(self, backend: ScoringBackend, max_new_tokens: int = 48, instruction: str = INSTRUCTION):
        self.backend, self.max_new_tokens, self.instruction = backend, max_new_tokens, instruction
        self._explanations: dict[str, str] = {}

    @property
    def identity(self) -> str:
        """What the teaching depends on (part of cached probes' key): the tutor model's file."""
        return f"model:{getattr(self.backend.model, 'source', type(self.backend.model).__name__)}"

    def prepare(self, lessons: list[Lesson]) -> None:
        """Generate the explanations of all the lessons' rules in one batch (``teach`` alone would do it
        one at a time)."""
        missing = sorted({lesson.rule for lesson in lessons if lesson.rule and lesson.rule not in self._explanations})
        prompts = [self.instruction.format(rule=r) for r in missing]
        outputs = self.backend.generate(prompts, max_new_tokens=self.max_new_tokens, stop=["\n"])
        self._explanations.update(zip(missing, (o.strip() for o in outputs), strict=True))

    def teach(self, lesson: Lesson, k: int = 0) -> str:
        if not lesson.rule:
            return ""
        self.prepare([lesson])
        return f"{lesson.rule} {self._explanations[lesson.rule]}\n"
