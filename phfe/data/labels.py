"""Family 2, flipped and arbitrary labels (Wei et al. 2023; Min et al. 2022): can demonstrations override
a label prior, or teach a mapping onto words with none?

Four binary tasks with a strong prior — sentiment ("The movie was dreadful."), parity ("Number: 17"),
greater-than ("Is 43 greater than 27?") and animal or plant ("tiger") — in one format: a demonstration is
``"Input: ...\\nLabel: {label}\\n\\n"``, the query ``"Input: ...\\nLabel:"``, scored against the task's two
labels (" positive"/" negative", " odd"/" even", " yes"/" no", " animal"/" plant"). The conditions show the
same demonstrations with different labels:

- ``gold``: the true labels (in-context = memorized, by design the only such condition); ``gold`` at k=0 is
  the zero-shot baseline, which teaches nothing (in_context None) — the only k=0 probe;
- ``random``: exactly half the demonstrations' labels flipped, one in every pair (in_context None: no
  consistent mapping; memorized the true label);
- ``flipped``: every label flipped (in-context the other label, memorized the true one);
- ``nonce``: two nonce words stand for the labels, one per class; the candidates are the nonce words
  (in-context the word of the true class, memorized None: no prior).

Demonstrations are k per class (``ks``), in pairs of one of each class in a seeded order, drawn from inputs
no query uses (sentiment: other adjectives); queries are balanced and the same for every order seed; each
order seed (``order_seeds``) draws its own demonstrations, fixed across conditions and queries so that k=2
is a prefix of k=4. An item is a query under one order seed (``item_id`` "sentiment-03-o1").

The demonstrations are the manipulation: each condition is a :class:`Lesson` carrying its labelled
demonstrations and its mapping in plain words ("In this task, positive sentences are labelled negative and
negative sentences are labelled positive."; none for ``random``), and the tutor turns it into the teaching
(``DemonstrationTutor``: k per class, the learning curve). A tutor whose text does not depend on k gives one
probe per condition at k=0: ``none`` the zero-shot baseline alone, ``rule`` each mapping stated plainly.

Candidates are single words, not token-count matched (nonce words may split into several tokens); every
probe of a task and condition scores the same candidates, so compare within them or length-normalize.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from phfe.data.family import Family
from phfe.data.probes import Probe
from phfe.tutors.base import Lesson, Tutor, teachings

CONDITIONS = ("gold", "random", "flipped", "nonce")
MAX_K = 16  # demonstrations per class drawn for every order seed: ks go up to this

POSITIVE = (
    "wonderful", "excellent", "amazing", "great", "fantastic", "superb", "delightful", "brilliant", "lovely",
    "outstanding", "marvelous", "terrific", "enjoyable", "charming", "beautiful", "pleasant", "impressive",
    "magnificent", "splendid", "perfect", "awesome", "fabulous", "stunning", "glorious", "remarkable",
    "exceptional", "exquisite", "heartwarming", "uplifting", "refreshing", "satisfying", "inspiring", "joyful",
    "gorgeous", "sublime", "wondrous", "breathtaking", "phenomenal", "incredible", "admirable", "good", "nice",
    "cheerful", "pleasing", "elegant", "flawless", "dazzling", "engaging", "captivating", "thrilling", "fun",
    "superior", "masterful", "lively", "sweet", "first-rate", "enchanting", "memorable", "stellar", "heavenly",
)  # fmt: skip
NEGATIVE = (
    "terrible", "awful", "horrible", "dreadful", "boring", "bad", "poor", "disappointing", "disgusting",
    "miserable", "lousy", "atrocious", "abysmal", "appalling", "pathetic", "mediocre", "dull", "tedious",
    "unpleasant", "ugly", "horrendous", "painful", "annoying", "frustrating", "depressing", "gross", "nasty",
    "dismal", "weak", "bland", "inferior", "worthless", "useless", "tiresome", "shoddy", "sloppy", "clumsy",
    "offensive", "revolting", "vile", "wretched", "dire", "hideous", "unbearable", "insufferable", "irritating",
    "lame", "stale", "messy", "second-rate", "forgettable", "pointless", "joyless", "lifeless", "rotten",
    "subpar", "horrid", "crummy", "dreary", "lackluster",
)  # fmt: skip
SENTENCES = (
    "The movie was {}.", "The meal was {}.", "The hotel was {}.", "The concert was {}.", "The book was {}.",
    "The service was {}.", "The trip was {}.", "The show was {}.",
)  # fmt: skip
ANIMALS = (
    "dog", "cat", "horse", "cow", "sheep", "goat", "pig", "lion", "tiger", "bear", "wolf", "fox", "deer", "rabbit",
    "mouse", "squirrel", "elephant", "giraffe", "zebra", "monkey", "camel", "kangaroo", "koala", "whale",
    "dolphin", "shark", "eagle", "owl", "parrot", "penguin", "duck", "chicken", "frog", "snake", "turtle",
    "lizard", "crocodile", "bee", "butterfly", "donkey",
)  # fmt: skip
PLANTS = (
    "oak", "pine", "maple", "birch", "willow", "palm", "fern", "moss", "rose", "tulip", "daisy", "lily", "orchid",
    "sunflower", "cactus", "bamboo", "ivy", "clover", "lavender", "basil", "mint", "thyme", "parsley",
    "dandelion", "poppy", "violet", "lilac", "potato", "carrot", "lettuce", "cabbage", "wheat", "rice", "barley",
    "grass", "cedar", "elm", "spruce", "magnolia", "daffodil",
)  # fmt: skip
NONCE_WORDS = ("dax", "wug", "blick", "zorp", "fep", "tove", "lorp", "quax", "snib", "mib")
COMPARISONS = 60  # questions drawn per class of the greater-than task


@dataclasses.dataclass(frozen=True)
class LabelTask:
    """A binary task with a strong prior: its labels, how a rule names its classes, and its inputs."""

    name: str
    labels: tuple[str, str]
    kinds: tuple[str, str]  # the classes in a rule: "positive sentences"
    inputs: Callable[[random.Random], tuple[list[str], list[str]]]  # distinct inputs per class, seeded order


@dataclasses.dataclass(frozen=True)
class Demonstration:
    """A labelled input: its true class, and whether the ``random`` condition flips its label."""

    text: str
    label: int
    random_flip: bool


def _sentiment(rng: random.Random) -> tuple[list[str], list[str]]:
    def sentences(words: tuple[str, ...]) -> list[str]:
        return [rng.choice(SENTENCES).format(w) for w in rng.sample(words, len(words))]

    return sentences(POSITIVE), sentences(NEGATIVE)


def _parity(rng: random.Random) -> tuple[list[str], list[str]]:
    numbers = rng.sample(range(10, 100), 90)
    return [f"Number: {n}" for n in numbers if n % 2], [f"Number: {n}" for n in numbers if n % 2 == 0]


def _greater(rng: random.Random) -> tuple[list[str], list[str]]:
    pairs = rng.sample([(a, b) for a in range(10, 100) for b in range(a + 1, 100)], 2 * COMPARISONS)
    yes = [f"Is {b} greater than {a}?" for a, b in pairs[:COMPARISONS]]
    no = [f"Is {a} greater than {b}?" for a, b in pairs[COMPARISONS:]]
    return yes, no


def _category(rng: random.Random) -> tuple[list[str], list[str]]:
    return rng.sample(ANIMALS, len(ANIMALS)), rng.sample(PLANTS, len(PLANTS))


TASKS = {
    t.name: t
    for t in (
        LabelTask("sentiment", ("positive", "negative"), ("positive sentences", "negative sentences"), _sentiment),
        LabelTask("parity", ("odd", "even"), ("odd numbers", "even numbers"), _parity),
        LabelTask("greater", ("yes", "no"), ("true comparisons", "false comparisons"), _greater),
        LabelTask("category", ("animal", "plant"), ("animals", "plants"), _category),
    )
}


def demonstrations(pools: tuple[list[str], list[str]], rng: random.Random) -> list[Demonstration]:
    """MAX_K inputs per class from ``pools`` in pairs of one of each class (seeded order); of every two pairs,
    the random condition flips one demonstration of each class, so any k pairs hold exactly k flips."""
    rest = [rng.sample(pool, len(pool)) for pool in pools]
    out = []
    for block in range(MAX_K // 2):
        flipped_class = (0, 1) if rng.random() < 0.5 else (1, 0)  # of the block's two pairs
        for j, flip in zip((2 * block, 2 * block + 1), flipped_class, strict=True):
            first = rng.randrange(2)
            out += [Demonstration(rest[c][j], c, c == flip) for c in (first, 1 - first)]
    return out


def shown_label(demo: Demonstration, condition: str) -> int:
    """The class whose label ``condition`` shows on ``demo``."""
    flip = condition == "flipped" or (condition == "random" and demo.random_flip)
    return 1 - demo.label if flip else demo.label


def rule(task: LabelTask, condition: str, labels: tuple[str, str]) -> str:
    """The condition's mapping in plain words; none for ``random``."""
    if condition == "random":
        return ""
    shown = [labels[1 - c] if condition == "flipped" else labels[c] for c in (0, 1)]
    return f"In this task, {task.kinds[0]} are labelled {shown[0]} and {task.kinds[1]} are labelled {shown[1]}."


@dataclasses.dataclass
class FlippedLabels(Family):
    """Label-prior probes: gold, random, flipped and nonce demonstrations, k per class (see the module)."""

    name = "flipped_labels"
    version = 1

    n_items: int = 12  # queries per task, balanced, shared by the order seeds
    ks: tuple[int, ...] = (0, 1, 2, 4, 8)  # demonstrations per class, up to MAX_K
    order_seeds: int = 2
    tasks: tuple[str, ...] = tuple(TASKS)
    conditions: tuple[str, ...] = CONDITIONS

    def __post_init__(self) -> None:
        if unknown := set(self.tasks) - set(TASKS) | set(self.conditions) - set(CONDITIONS):
            raise ValueError(f"unknown tasks or conditions {sorted(unknown)}")
        if not all(0 <= k <= MAX_K for k in self.ks) or self.n_items < 1 or self.order_seeds < 1:
            raise ValueError(f"need 0 <= ks <= {MAX_K}, n_items >= 1, order_seeds >= 1")

    def build(self, seed: int, tutor: Tutor) -> list[Probe]:
        return [p for name in self.tasks for p in self._task_probes(TASKS[name], seed, tutor)]

    def _task_probes(self, task: LabelTask, seed: int, tutor: Tutor) -> list[Probe]:
        rng = random.Random(f"{self.name}:{seed}:{task.name}")
        pools = task.inputs(rng)
        per_class = (self.n_items + 1) // 2
        if min(map(len, pools)) < per_class + MAX_K:
            raise ValueError(f"{task.name}: n_items={self.n_items} leaves fewer than {MAX_K} demonstrations a class")
        queries = rng.sample([(pools[c][i], c) for c in (0, 1) for i in range(per_class)], self.n_items)
        first, second = rng.sample(NONCE_WORDS, 2)
        nonce = (first, second)
        demo_pools = (pools[0][per_class:], pools[1][per_class:])
        probes = []
        for order_seed in range(self.order_seeds):
            demos = demonstrations(demo_pools, random.Random(f"{self.name}:{seed}:{task.name}:{order_seed}"))
            lessons = {"closed_book": ("", {0: ""}, task.labels, [])}  # the zero-shot baseline, taught nothing
            for condition in self.conditions:
                labels = nonce if condition == "nonce" else task.labels
                shown = [shown_label(d, condition) for d in demos]
                lines = tuple(f"Input: {d.text}\nLabel: {labels[s]}\n\n" for d, s in zip(demos, shown, strict=True))
                taught = {
                    k: t
                    for k, t in teachings(tutor, Lesson(rule(task, condition, labels), lines), self.ks, 2).items()
                    if t
                }
                lessons[condition] = (condition, taught, labels, shown)
            for name, (condition, taught, labels, shown) in lessons.items():
                for k, teaching in taught.items():
                    meta = {
                        "task": task.name,
                        "order_seed": order_seed,
                        "demo_labels": [task.labels[d.label] for d in demos[: 2 * k]],
                        "shown_labels": [labels[s] for s in shown[: 2 * k]],
                    }
                    for i, (text, c) in enumerate(queries):
                        memorized, in_context = _answers(condition, c, taught=bool(teaching))
                        probes.append(
                            Probe(
                                family=self.name,
                                item_id=f"{task.name}-{i:02d}-o{order_seed}",
                                condition=name,
                                prompt=f"{teaching}Input: {text}\nLabel:",
                                candidates=tuple(f" {label}" for label in labels),
                                memorized=memorized,
                                in_context=in_context,
                                template_id=task.name,
                                entity=text,
                                seed=seed,
                                k=k,
                                meta=meta | {"label": task.labels[c]},
                            )
                        )
        return probes


def _answers(condition: str, true: int, taught: bool) -> tuple[int | None, int | None]:
    """(memorized, in_context) indices of a query of class ``true``."""
    if condition == "nonce":
        return None, true
    if condition == "":  # the closed-book baseline
        return true, None
    in_context = {"gold": true, "flipped": 1 - true, "random": None}[condition] if taught else None
    return true, in_context
