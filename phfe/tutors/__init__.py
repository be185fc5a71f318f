"""Sources of in-context teaching: none, the plain rule, k demonstrations, or a tutor model's explanation."""

from phfe.tutors.base import Lesson, Tutor
from phfe.tutors.model import ModelTutor
from phfe.tutors.simple import DemonstrationTutor, NoTutor, RuleTutor

SIMPLE_TUTORS = {t.name: t for t in (NoTutor, RuleTutor, DemonstrationTutor)}

__all__ = ["SIMPLE_TUTORS", "DemonstrationTutor", "Lesson", "ModelTutor", "NoTutor", "RuleTutor", "Tutor"]
