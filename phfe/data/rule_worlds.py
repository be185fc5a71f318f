"""Family 3: counterfactual rule worlds (Wu et al. 2023, "Reasoning or Reciting?").

Each world states a rule that contradicts the default one, and asks a question whose answer differs
between the two: the prompt's world gives the in-context answer, the default world the memorized one.

- ``base8``, ``base9``, ``base11``, ``base16``: two-digit additions, ``"In base 9, 27 + 35 ="``. Operands use the
  digits 0-9 only (those below the base), so the same digit strings also read as decimal numbers; the memorized
  answer is their base-10 sum (``" 62"``), the in-context one their base-b sum (``" 63"``; digits past 9 are
  ``A``-``F``). Only problems whose two answers differ and have the same number of digits are kept; two
  distractors are near misses (off by one in either world, or the digits swapped) of the same length.
- ``shifted_alphabet``: a Caesar shift (``shift`` places forward, z wraps to a) of a short word, spelled with
  spaces: ``"With each letter shifted forward by one, c a t becomes"`` -> ``" d b u"`` (in context) vs the
  unshifted ``" c a t"`` (memorized); distractors are the word shifted backward and shifted twice as far.
- ``zero_based``: ``"In the list cat, dog, fox, owl, counting positions from 0, the word at position 2 is"`` ->
  ``" fox"`` (in context) vs ``" dog"`` (memorized: the natural-language reading, position 2 = the second word);
  distractors are the list's other words.

Each world also has a comprehension check (condition ``<world>_check``), a question on the rule itself with
two candidates, the world's answer and the default one: ``"In base 9, the number after 8 is"`` -> ``" 10"`` vs
``" 9"``; ``"With each letter shifted forward by one, c becomes"`` -> ``" d"`` vs ``" c"``; ``"In the list ...,
counting positions from 0, the word fox is at position"`` -> ``" 2"`` vs ``" 3"``. Metrics can keep the items of
the worlds whose checks the model passes.

Candidates: index 0 is in context, index 1 memorized, then distractors. Task candidates are token-count
matched for SmolLM2 and Gemma 3 (same number of characters, and digits, letters and the short nouns are one
token each), so summed log-likelihoods compare fairly; check candidates are not (``" 10"`` vs ``" 9"``, ``" A"``
vs ``" 10"``): length-normalize them or read them as a gate only. ``meta`` holds ``world``, ``check``,
``world_answer`` and ``default_answer`` (for bases: the base-b and the base-10 readings), and ``base`` and
``operands``, ``shift``, or ``list`` and ``position``. Demonstrations are solved task questions of the same
world, 16 per world in a fixed order, never one of the test items; checks are asked after the same teaching.
"""

from __future__ import annotations

import random
import string
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from phfe.data.family import Family
from phfe.data.probes import Probe
from phfe.tutors.base import Lesson, Tutor

DIGITS = "0123456789ABCDEF"
MAX_DEMONSTRATIONS = 16
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
# Short common nouns, each one token (with its leading space) for SmolLM2 and Gemma 3.
NOUNS = (
    "ant ape arm axe bag bat bed bee bow box boy bun bus cab cap car cat cow cup dog ear egg elk eye fan fig fox gem "
    "gum hat hen hut ink jar jet key kid leg lip log map mat mud net nut oak owl pan pea pen pie pig pin pot ram rat "
    "rug saw sea sun tea tie toe toy tub van web zoo"
)
WORDS = tuple(NOUNS.split())
LIST_LENGTH = 4


def to_base(number: int, base: int) -> str:
    """``number`` (>= 0) written in ``base`` (2..16), with uppercase letters for digits past 9."""
    text = ""
    while True:
        number, digit = divmod(number, base)
        text = DIGITS[digit] + text
        if number == 0:
            return text


def shift_letters(word: str, shift: int) -> str:
    """``word`` (lowercase letters) with every letter moved ``shift`` places along the alphabet, wrapping."""
    letters = string.ascii_lowercase
    return "".join(letters[(letters.index(c) + shift) % 26] for c in word)


def spell(word: str) -> str:
    """``word`` with its letters separated by spaces (one token per letter)."""
    return " ".join(word)


@dataclass(frozen=True)
class Question:
    """A question in a world: its text (the answer follows after a space), its answer in the world and in
    the default world, and type-matched distractors."""

    text: str
    answer: str
    default: str
    distractors: tuple[str, ...] = ()
    entity: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def solved(self) -> str:
        """The question with its in-world answer, as one demonstration line."""
        return f"{self.text} {self.answer}\n"


class World(ABC):
    """A counterfactual world: a name, its rule in plain words, and random questions in it."""

    name: str
    rule: str

    @abstractmethod
    def question(self, rng: random.Random) -> Question | None:
        """A random task question, or None when the draw is filtered out."""

    @abstractmethod
    def check(self, rng: random.Random) -> Question:
        """A random comprehension check: a question on the rule itself."""


class BaseArithmetic(World):
    """Two-digit additions written in ``base``; the default world reads the same digits in base 10."""

    def __init__(self, base: int):
        self.base, self.top = base, min(base, 10)  # operand digits: 0 .. top - 1
        self.name = f"base{base}"
        self.rule = f"Numbers are written in base {base}."
        if base > 10:
            self.rule += f" The digits are 0 to 9 and then {' '.join(DIGITS[10:base])}."

    def question(self, rng: random.Random) -> Question | None:
        a, b = (f"{rng.randrange(1, self.top)}{rng.randrange(self.top)}" for _ in range(2))
        total = int(a, self.base) + int(b, self.base)
        answer, default = to_base(total, self.base), str(int(a) + int(b))
        if answer == default or len(answer) != len(default):
            return None
        near = {to_base(total + 1, self.base), to_base(total - 1, self.base), answer[::-1]}
        near |= {str(int(default) + 1), str(int(default) - 1)}
        # same length, led by a digit 1-9 like both answers (a leading letter would tokenize differently)
        pool = sorted(d for d in near - {answer, default} if len(d) == len(answer) and d[0] in DIGITS[1:10])
        if len(pool) < 2:
            return None
        return Question(
            f"In base {self.base}, {a} + {b} =",
            answer,
            default,
            tuple(rng.sample(pool, 2)),
            entity=f"{a} + {b}",
            meta={"base": self.base, "operands": [a, b]},
        )

    def check(self, rng: random.Random) -> Question:
        number = f"{rng.randrange(self.top) or ''}{self.top - 1}"  # its successor carries in one world only
        answer = to_base(int(number, self.base) + 1, self.base)
        return Question(
            f"In base {self.base}, the number after {number} is",
            answer,
            str(int(number) + 1),
            entity=number,
            meta={"base": self.base},
        )


class ShiftedAlphabet(World):
    """Every letter is written as the one ``shift`` places later; the default world leaves letters alone."""

    name = "shifted_alphabet"

    def __init__(self, shift: int):
        self.shift, self.spoken = shift, NUMBER_WORDS[shift]
        places = "place" if shift == 1 else "places"
        self.rule = (
            f"Each letter is replaced by the letter {self.spoken} {places} later in the alphabet, after z comes a."
        )

    def question(self, rng: random.Random) -> Question:
        word = rng.choice(WORDS)
        return Question(
            f"With each letter shifted forward by {self.spoken}, {spell(word)} becomes",
            spell(shift_letters(word, self.shift)),
            spell(word),
            (spell(shift_letters(word, -self.shift)), spell(shift_letters(word, 2 * self.shift))),
            entity=word,
            meta={"shift": self.shift},
        )

    def check(self, rng: random.Random) -> Question:
        letter = rng.choice(string.ascii_lowercase)
        return Question(
            f"With each letter shifted forward by {self.spoken}, {letter} becomes",
            shift_letters(letter, self.shift),
            letter,
            entity=letter,
            meta={"shift": self.shift},
        )


class ZeroBased(World):
    """List positions counted from 0; the default world counts them as ordinals, from 1."""

    name = "zero_based"
    rule = "Positions in a list are counted from 0: the first word is at position 0."

    @staticmethod
    def _list(words: list[str]) -> str:
        return f"In the list {', '.join(words)}, counting positions from 0,"

    def question(self, rng: random.Random) -> Question:
        words = rng.sample(WORDS, LIST_LENGTH)
        position = rng.randrange(1, LIST_LENGTH)
        others = tuple(w for i, w in enumerate(words) if i not in (position, position - 1))
        return Question(
            f"{self._list(words)} the word at position {position} is",
            words[position],
            words[position - 1],
            others,
            entity=words[position],
            meta={"list": words, "position": position},
        )

    def check(self, rng: random.Random) -> Question:
        words = rng.sample(WORDS, LIST_LENGTH)
        position = rng.randrange(LIST_LENGTH)
        return Question(
            f"{self._list(words)} the word {words[position]} is at position",
            str(position),
            str(position + 1),
            entity=words[position],
            meta={"list": words, "position": position},
        )


WORLDS = ("base8", "base9", "base11", "base16", "shifted_alphabet", "zero_based")


def make_world(name: str, shift: int = 1) -> World:
    """The world called ``name`` (one of :data:`WORLDS`)."""
    if name.startswith("base") and name in WORLDS:
        return BaseArithmetic(int(name.removeprefix("base")))
    if name == "shifted_alphabet":
        return ShiftedAlphabet(shift)
    if name == "zero_based":
        return ZeroBased()
    raise ValueError(f"unknown rule world {name!r}; known: {', '.join(WORLDS)}")


def distinct_questions(rng: random.Random, draw: Callable[[random.Random], Question | None], n: int) -> list[Question]:
    """The first ``n`` questions with distinct texts that ``draw`` makes (filtered draws skipped)."""
    found: dict[str, Question] = {}
    for _ in range(100 * n + 1000):
        if len(found) == n:
            return list(found.values())
        question = draw(rng)
        if question is not None:
            found.setdefault(question.text, question)
    raise ValueError(f"could not draw {n} distinct questions (found {len(found)})")


@dataclass
class RuleWorlds(Family):
    """Questions in counterfactual worlds, with k demonstrations; ``n_items`` task items and ``n_checks``
    comprehension checks per world, each at every k in ``ks``."""

    name = "rule_worlds"
    version = 1

    worlds: tuple[str, ...] = WORLDS
    ks: tuple[int, ...] = (0, 2, 4, 8)
    n_checks: int = 8
    shift: int = 1  # the shifted alphabet's shift: 1, 2 or 3

    def __post_init__(self) -> None:
        if not all(0 <= k <= MAX_DEMONSTRATIONS for k in self.ks):
            raise ValueError(f"ks must lie in 0..{MAX_DEMONSTRATIONS}: {self.ks}")
        if self.shift not in NUMBER_WORDS:
            raise ValueError(f"shift must be one of {sorted(NUMBER_WORDS)}: {self.shift}")
        for name in self.worlds:
            make_world(name, self.shift)

    def build(self, seed: int, tutor: Tutor) -> list[Probe]:
        probes = []
        for world in (make_world(name, self.shift) for name in self.worlds):
            drawn = distinct_questions(
                random.Random(f"{seed}/{world.name}"), world.question, MAX_DEMONSTRATIONS + self.n_items
            )
            demonstrations, items = drawn[:MAX_DEMONSTRATIONS], drawn[MAX_DEMONSTRATIONS:]
            checks = distinct_questions(random.Random(f"{seed}/{world.name}/check"), world.check, self.n_checks)
            lesson = Lesson(world.rule, tuple(q.solved() for q in demonstrations))
            for k in self.ks:
                teaching = tutor.teach(lesson, k)
                for condition, questions in ((world.name, items), (f"{world.name}_check", checks)):
                    probes += [
                        self._probe(seed, k, world, condition, f"{condition}/{i:03d}", teaching, q)
                        for i, q in enumerate(questions)
                    ]
        return probes

    def _probe(
        self, seed: int, k: int, world: World, condition: str, item: str, teaching: str, question: Question
    ) -> Probe:
        answers = (question.answer, question.default, *question.distractors)
        return Probe(
            family=self.name,
            item_id=f"{self.name}/{item}",
            condition=condition,
            prompt=teaching + question.text,
            candidates=tuple(f" {a}" for a in answers),
            memorized=1,
            in_context=0,
            template_id=condition,
            entity=question.entity,
            seed=seed,
            k=k,
            meta={
                "world": world.name,
                "check": condition != world.name,
                "world_answer": question.answer,
                "default_answer": question.default,
                **question.meta,
            },
        )
