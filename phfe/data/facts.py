"""Family 1, counterfactual facts: a passage states a fact that contradicts what pretraining taught.

Knowledge conflict after Longpre et al. (2021), CounterFact and ConflictBank, on the curated facts of
:mod:`phfe.data.facts_data`. Per seed, a fixed pool of facts becomes the demonstrations (closed-book
"Q: ...\\nA: answer" examples in one order shared by every item, so k=2 is a prefix of k=4) and is kept out of
the test items; each test fact gets a counterfactual answer and distractors drawn from its own relation's
answers (type-matched, never the true answer, all different). Conditions, one probe per item and k:

- ``closed_book``: the question alone; memorized = true, in_context None.
- ``congruent``: a context stating the true fact; memorized = in_context = true. This is the one condition
  whose in-context answer IS the memorized one; every conflicting condition below has them differ.
- ``conflicting``: a context stating the counterfactual; memorized = true, in_context = counterfactual.
- ``conflicting_instructed``: the same, after "Answer using only the context."
- ``both_true_first`` / ``both_false_first``: both statements, in either order; in_context = counterfactual.
- ``paraphrased``: the counterfactual stated without the question's wording (a copy control).
- ``invented``: the same relation asked about an invented subject, with the counterfactual answer stated;
  memorized None (no prior possible), in_context = that answer.

Every probe of an item has the same candidates in the same order (true, counterfactual and distractors,
shuffled once per item), so conditions compare identical answer strings. Answers differ in token count
(" Paris" vs " Buenos Aires"): they are not token-count matched, so metrics should use the summed
log-likelihood alongside a per-token-normalized variant.
"""

from __future__ import annotations

import dataclasses
import random

from phfe.data.facts_data import RELATIONS, Relation, fill
from phfe.data.family import Family
from phfe.data.probes import Probe
from phfe.tutors.base import Lesson, Tutor

CONDITIONS = (
    "closed_book",
    "congruent",
    "conflicting",
    "conflicting_instructed",
    "both_true_first",
    "both_false_first",
    "paraphrased",
    "invented",
)
INSTRUCTION = "Answer using only the context.\n"


@dataclasses.dataclass(frozen=True)
class _Item:
    """One test fact with its counterfactual, the answers scored (fixed order) and its invented twin."""

    relation: Relation
    subject: str
    true: str
    counterfactual: str
    answers: tuple[str, ...]
    paraphrase: str  # the paraphrase template used for this item
    invented: str  # an invented subject of the same relation


def demonstration(relation: Relation, subject: str, answer: str) -> str:
    """A solved closed-book example: the question and its true answer, then a blank line."""
    return f"{relation.ask(subject)} {answer}\n\n"


def _deal(pools: dict[str, list[tuple[str, str]]], n: int, rng: random.Random) -> list[tuple[Relation, str, str]]:
    """Up to ``n`` facts taken from the shuffled per-relation ``pools``, one relation at a time in shuffled
    rounds, so the relations are balanced (to within one fact while none runs out)."""
    dealt: list[tuple[Relation, str, str]] = []
    while len(dealt) < n and any(pools.values()):
        turn = [name for name in sorted(pools) if pools[name]]
        rng.shuffle(turn)
        for name in turn[: n - len(dealt)]:
            dealt.append((RELATIONS[name], *pools[name].pop()))
    return dealt


@dataclasses.dataclass
class CounterfactualFacts(Family):
    """Counterfactual facts in eight conditions (see the module docstring); ``ks``: demonstration counts."""

    name = "counterfactual_facts"
    version = 1

    n_items: int = 60
    ks: tuple[int, ...] = (4,)
    n_distractors: int = 2
    n_demonstrations: int = 16  # the reserved pool; k may not exceed it
    relations: tuple[str, ...] = tuple(sorted(RELATIONS))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.relations) - set(RELATIONS))
        if unknown:
            raise ValueError(f"unknown relations {unknown}; known: {sorted(RELATIONS)}")
        if any(not 0 <= k <= self.n_demonstrations for k in self.ks):
            raise ValueError(f"ks {self.ks} must lie in [0, n_demonstrations={self.n_demonstrations}]")
        for name in self.relations:
            if len(RELATIONS[name].answers) < 2 + self.n_distractors:
                raise ValueError(f"relation {name} has too few answers for {self.n_distractors} distractors")

    def build(self, seed: int, tutor: Tutor) -> list[Probe]:
        rng = random.Random(seed)
        pools = {name: rng.sample(RELATIONS[name].facts, len(RELATIONS[name].facts)) for name in sorted(self.relations)}
        pool = _deal(pools, self.n_demonstrations, rng)
        facts = _deal(pools, self.n_items, rng)
        if len(pool) + len(facts) < self.n_demonstrations + self.n_items:
            raise ValueError(f"the relations hold too few facts for {self.n_demonstrations} demonstrations + items")
        demonstrations = tuple(demonstration(*fact) for fact in pool)
        invented = {name: rng.sample(RELATIONS[name].invented, len(RELATIONS[name].invented)) for name in pools}
        items: list[_Item] = []
        for relation, subject, true in facts:  # each relation's invented subjects in turn, reused only when used up
            names = invented[relation.name]
            used = sum(item.relation is relation for item in items)
            items.append(self._item(rng, relation, subject, true, names[used % len(names)]))
        return [
            probe for k in self.ks for item in items for probe in self._probes(item, k, demonstrations, tutor, seed)
        ]

    def _item(self, rng: random.Random, relation: Relation, subject: str, true: str, invented: str) -> _Item:
        others = [answer for answer in relation.answers if answer != true]
        counterfactual, *distractors = rng.sample(others, 1 + self.n_distractors)
        answers = [true, counterfactual, *distractors]
        rng.shuffle(answers)
        paraphrase = rng.choice(relation.paraphrases)
        return _Item(relation, subject, true, counterfactual, tuple(answers), paraphrase, invented)

    def _probes(self, item: _Item, k: int, demonstrations: tuple[str, ...], tutor: Tutor, seed: int) -> list[Probe]:
        relation, subject = item.relation, item.subject
        true_fact = relation.state(subject, item.true)
        false_fact = relation.state(subject, item.counterfactual)
        t, c = item.answers.index(item.true), item.answers.index(item.counterfactual)
        # condition: (instruction, context, memorized, in_context, subject asked about)
        specs = {
            "closed_book": ("", "", t, None, subject),
            "congruent": ("", true_fact, t, t, subject),
            "conflicting": ("", false_fact, t, c, subject),
            "conflicting_instructed": (INSTRUCTION, false_fact, t, c, subject),
            "both_true_first": ("", f"{true_fact} {false_fact}", t, c, subject),
            "both_false_first": ("", f"{false_fact} {true_fact}", t, c, subject),
            "paraphrased": ("", fill(item.paraphrase, subject, item.counterfactual), t, c, subject),
            "invented": ("", relation.state(item.invented, item.counterfactual), None, c, item.invented),
        }
        meta = {"relation": relation.name, "true": item.true, "counterfactual": item.counterfactual}
        invented_meta = {"relation": relation.name, "true": None, "counterfactual": None, "stated": item.counterfactual}
        probes = []
        for condition in CONDITIONS:
            instruction, context, memorized, in_context, asked = specs[condition]
            teaching = tutor.teach(Lesson(rule=context, demonstrations=demonstrations), k)
            passage = f"Context: {context}\n" if context else ""
            probes.append(
                Probe(
                    family=self.name,
                    item_id=f"{relation.name}:{subject}",
                    condition=condition,
                    prompt=teaching + instruction + passage + relation.ask(asked),
                    candidates=tuple(f" {answer}" for answer in item.answers),
                    memorized=memorized,
                    in_context=in_context,
                    template_id=relation.name,
                    entity=asked,
                    seed=seed,
                    k=k,
                    meta=invented_meta if condition == "invented" else meta,
                )
            )
        return probes
