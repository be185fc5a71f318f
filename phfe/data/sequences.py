"""Family 5, prior-conflicting sequences: months, weekdays, letters and counting numbers with a new stride.

An item is a domain, the last element shown and the number shown (field ``shown``; ``item_id``
"months-May-n3"); each condition shows the sequence of its stride that ends there and asks for the next:

- ``stride_1``, the control: "March, April, May," -> June (in-context = memorized: the only such condition);
- ``stride_2``, ``stride_3`` (field ``strides``): "January, March, May," -> in-context July, memorized June
  (the default successor of the last element shown).

Every condition of an item scores the same candidates, in a seeded order: the successors of the last element
at offset 1 and at each stride, and ``n_distractors`` other elements of the domain (counting numbers: within
10 of the last). Months and weekdays wrap around ("November, January,"); letters and numbers never need to.
A stride whose successor coincides with another's in a cyclic domain (8 for weekdays) is skipped there.

Teaching: the rule "Each item skips ahead by {stride}."; demonstrations are solved sequences of the same
stride and length from all domains, one line each ("February, April, June, August\\n"), in one fixed order
per (stride, shown) without the item's own sequence. ``k`` is the number of demonstrations (field ``ks``,
default none); the length of the shown sequence is ``shown``, in ``meta`` and the item id.

Candidates are single words or numbers, not token-count matched (" September" vs " May"): compare the
conditions of an item (same candidates) or length-normalize.
"""

from __future__ import annotations

import calendar
import dataclasses
import random
import string

from phfe.data.family import Family
from phfe.data.probes import Probe
from phfe.tutors.base import Lesson, Tutor, teachings

COUNTING_RADIUS = 10  # counting distractors lie within this of the last number shown


@dataclasses.dataclass(frozen=True)
class Domain:
    """A sequence with a strong default order; cyclic ones wrap around."""

    name: str
    elements: tuple[str, ...]
    cyclic: bool

    def at(self, index: int) -> str:
        return self.elements[index % len(self.elements)] if self.cyclic else self.elements[index]


DOMAINS = {
    d.name: d
    for d in (
        Domain("months", tuple(calendar.month_name[1:]), cyclic=True),
        Domain("weekdays", tuple(calendar.day_name), cyclic=True),
        Domain("letters", tuple(string.ascii_uppercase), cyclic=False),
        Domain("counting", tuple(str(n) for n in range(1000)), cyclic=False),
    )
}


@dataclasses.dataclass
class PriorSequences(Family):
    """Sequences shown with a stride other than 1 against the default successor (see the module)."""

    name = "prior_sequences"
    version = 1

    n_items: int = 12  # last elements per domain (at most those the domain allows: 7 weekdays)
    shown: tuple[int, ...] = (3, 5)
    strides: tuple[int, ...] = (2, 3)
    n_distractors: int = 1
    ks: tuple[int, ...] = (0,)  # demonstrations
    domains: tuple[str, ...] = tuple(DOMAINS)

    def __post_init__(self) -> None:
        if set(self.domains) - set(DOMAINS) or min(self.strides) < 2 or min(self.shown) < 2 or min(self.ks) < 0:
            raise ValueError("need known domains, strides >= 2, shown >= 2, ks >= 0")
        for name in self.domains:
            domain = DOMAINS[name]
            if not self.lasts(domain):
                raise ValueError(f"{name}: no sequence fits strides {self.strides} and shown {self.shown}")
            if domain.cyclic and len(domain.elements) - 1 - len(self.offsets(domain)) < self.n_distractors:
                raise ValueError(f"{name}: too few elements for {self.n_distractors} distractors")
        if unusable := set(self.strides) - {o for name in self.domains for o in self.offsets(DOMAINS[name])}:
            raise ValueError(f"strides {sorted(unusable)} give the default successor in every domain")

    def offsets(self, domain: Domain) -> list[int]:
        """The successors every item of ``domain`` scores: offset 1 (the prior) and each usable stride."""
        out = [1]
        size = len(domain.elements)
        for stride in sorted(set(self.strides)):
            if not domain.cyclic or all((stride - o) % size for o in [0, *out]):
                out.append(stride)
        return out

    def lasts(self, domain: Domain) -> list[int]:
        """Indices of the last elements shown that every stride and length can reach (counting: from 1 up)."""
        if domain.cyclic:
            return list(range(len(domain.elements)))
        span, top = max(self.strides) * (max(self.shown) - 1), max(self.strides)
        low = span + 1 if domain.name == "counting" else span
        high = 99 if domain.name == "counting" else len(domain.elements) - 1 - top
        return list(range(low, high + 1))

    def build(self, seed: int, tutor: Tutor) -> list[Probe]:
        demos = {
            (stride, shown): self._demonstrations(seed, stride, shown)
            for stride in (1, *self.strides)
            for shown in self.shown
        }
        probes = []
        for name in self.domains:
            domain = DOMAINS[name]
            rng = random.Random(f"{self.name}:{seed}:{name}")
            lasts = self.lasts(domain)
            for last in rng.sample(lasts, min(self.n_items, len(lasts))):
                probes += self._item_probes(domain, last, seed, rng, tutor, demos)
        return probes

    def _demonstrations(self, seed: int, stride: int, shown: int) -> list[tuple[tuple[str, int], str]]:
        """Solved sequences of ``stride`` and length ``shown``, one more than max(ks), the domains in turn;
        each with its (domain, last index) so that an item can leave its own out."""
        rng = random.Random(f"{self.name}:{seed}:demonstrations:{stride}:{shown}")
        usable = [DOMAINS[n] for n in self.domains if stride in self.offsets(DOMAINS[n])]
        out: list[tuple[tuple[str, int], str]] = []
        for j in range(max(self.ks) + 1):
            domain = usable[j % len(usable)]
            last = rng.choice([i for i in self.lasts(domain) if (domain.name, i) not in dict(out)])
            solved = _sequence(domain, last + stride, stride, shown + 1)
            out.append(((domain.name, last), ", ".join(solved) + "\n"))
        return out

    def _item_probes(
        self,
        domain: Domain,
        last: int,
        seed: int,
        rng: random.Random,
        tutor: Tutor,
        demos: dict[tuple[int, int], list[tuple[tuple[str, int], str]]],
    ) -> list[Probe]:
        offsets = self.offsets(domain)
        taken = {domain.at(last + o) for o in (0, *offsets)}
        others = [i for i in _neighbourhood(domain, last) if domain.at(i) not in taken]
        indices = [last + o for o in offsets] + rng.sample(others, self.n_distractors)
        order = rng.sample(range(len(indices)), len(indices))
        candidates = tuple(f" {domain.at(indices[j])}" for j in order)
        memorized = order.index(0)
        probes = []
        for stride in (1, *offsets[1:]):
            in_context = order.index(offsets.index(stride))
            if stride > 1 and candidates[in_context] == candidates[memorized]:
                raise AssertionError(f"{domain.name}: stride {stride} agrees with the prior")
            for shown in self.shown:
                sequence = _sequence(domain, last, stride, shown)
                lines = tuple(line for source, line in demos[stride, shown] if source != (domain.name, last))
                lesson = Lesson(f"Each item skips ahead by {stride}.", lines[: max(self.ks)])
                for k, teaching in teachings(tutor, lesson, self.ks).items():
                    probes.append(
                        Probe(
                            family=self.name,
                            item_id=f"{domain.name}-{domain.at(last)}-n{shown}",
                            condition=f"stride_{stride}",
                            prompt=f"{teaching}{', '.join(sequence)},",
                            candidates=candidates,
                            memorized=memorized,
                            in_context=in_context,
                            template_id=domain.name,
                            entity=domain.at(last),
                            seed=seed,
                            k=k,
                            meta={
                                "domain": domain.name,
                                "stride": stride,
                                "shown": shown,
                                "sequence": sequence,
                                "offsets": [indices[j] - last for j in order],
                            },
                        )
                    )
        return probes


def _sequence(domain: Domain, last: int, stride: int, length: int) -> list[str]:
    """The ``length`` elements of ``domain`` that step by ``stride`` up to index ``last``."""
    return [domain.at(last - stride * j) for j in reversed(range(length))]


def _neighbourhood(domain: Domain, last: int) -> list[int]:
    """Where distractors come from: the whole domain, or (counting) the numbers near the last one shown."""
    if domain.cyclic:
        return list(range(last + 1, last + len(domain.elements)))
    if domain.name == "counting":
        return list(range(max(0, last - COUNTING_RADIUS), last + COUNTING_RADIUS + 1))
    return list(range(len(domain.elements)))
