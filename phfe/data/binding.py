"""Family 4: pure in-context binding — nonce keys bound to values in the prompt, then one recalled.

No prior is possible (``memorized`` is None): the keys are invented words, so only reading the prompt gives
the answer. This is the reading ceiling the other families are measured against.

- ``bind``: ``"Key list:\\nraku = 17\\nzomi = 42\\nQ: What is zomi?\\nA:"`` -> ``" 42"`` (in context, index 0);
  the list's other values are the distractors.
- ``rebinding``: the same list with the queried key bound a second time, to a fresh value, somewhere after
  its first binding; the later binding wins (in context, index 0), the overwritten value is index 1 (a
  distractor, named in ``meta["overwritten"]``), then the other values.

Settings: ``pairs`` (bindings per list), ``values`` (templates: two-digit ``numbers`` or ``colours`` words),
``ks`` (demonstrations: solved two-pair lists with keys no item uses, in a fixed order). The queried pair
cycles over the positions first, last and middle (``meta["position"]``, ``meta["index"]``; middle is left out
of lists too short to have one), and ``meta["distance"]`` counts the bindings between the answering one and
the question. Keys are two consonant-vowel syllables ending in i or u (rare word endings in English), never
the same syllable twice, and never a word in :data:`BLOCKLIST`; they are unique within a list.

Candidates are type-matched and token-count matched: two-digit numbers are three tokens (space, digit,
digit) and the colours one token each, for SmolLM2 and Gemma 3, so summed log-likelihoods compare fairly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from phfe.data.family import Family
from phfe.data.probes import Probe
from phfe.tutors.base import Lesson, Tutor

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aiou"
FINAL_VOWELS = "iu"
# Words, names and common loanwords that the key pattern would otherwise produce.
REAL_WORDS = (
    "babu bali dali dari fugu gobi goku guru kaki kali kami kanu kimi kofi kudu kuru kuzu loki magi maki mali mami "
    "mani midi mini modi mori nadi nami nazi nori pali papi pari pitu puri rabi radi ragu rani ravi rimu roti sami "
    "sari sati sisu situ sufi suki sumi tabu tapu tiki tipi tofu toki tori vagu valu vari vidi zulu zuni"
)
BLOCKLIST = frozenset(REAL_WORDS.split())
NONCE_KEYS = tuple(
    first + last
    for first in (c + v for c in CONSONANTS for v in VOWELS)
    for last in (c + v for c in CONSONANTS for v in FINAL_VOWELS)
    if first != last and first + last not in BLOCKLIST
)
# Colour words, each one token (with its leading space) for SmolLM2 and Gemma 3.
COLOURS = (
    "amber black blue brown cyan gold green grey ivory lime navy olive orange pink purple red silver violet white "
    "yellow"
)
VALUES = {"numbers": tuple(str(n) for n in range(10, 100)), "colours": tuple(COLOURS.split())}
MAX_DEMONSTRATIONS = 8
DEMONSTRATION_PAIRS = 2
RULE = "Each key stands for the value after its equals sign; when a key is listed twice, the later value counts."


def positions(n_pairs: int) -> dict[str, int]:
    """The named places of the queried pair in a list of ``n_pairs``, in list order; a middle that would be
    the first or the last place is left out."""
    named: dict[str, int] = {}
    for name, index in (("first", 0), ("last", n_pairs - 1), ("middle", n_pairs // 2)):
        if index not in named.values():
            named[name] = index
    return dict(sorted(named.items(), key=lambda item: item[1]))


def key_list(pairs: list[tuple[str, str]], key: str) -> str:
    """The prompt that binds ``pairs`` and asks for ``key``'s value."""
    lines = "".join(f"{k} = {v}\n" for k, v in pairs)
    return f"Key list:\n{lines}Q: What is {key}?\nA:"


@dataclass
class Binding(Family):
    """``n_items`` key lists per value template and list length, each asked once plainly and once rebound."""

    name = "binding"
    version = 1

    pairs: tuple[int, ...] = (2, 4, 8, 16)
    values: tuple[str, ...] = ("numbers", "colours")
    ks: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if not all(0 <= k <= MAX_DEMONSTRATIONS for k in self.ks):
            raise ValueError(f"ks must lie in 0..{MAX_DEMONSTRATIONS}: {self.ks}")
        for kind in self.values:
            if kind not in VALUES:
                raise ValueError(f"unknown value template {kind!r}; known: {', '.join(VALUES)}")
            if not all(2 <= n < len(VALUES[kind]) for n in self.pairs):
                raise ValueError(f"pairs must lie in 2..{len(VALUES[kind]) - 1} for {kind}: {self.pairs}")

    def build(self, seed: int, tutor: Tutor) -> list[Probe]:
        probes = []
        for kind in self.values:
            rng = random.Random(f"{seed}/{kind}/demonstrations")
            demo_keys = rng.sample(NONCE_KEYS, MAX_DEMONSTRATIONS * DEMONSTRATION_PAIRS)
            demonstrations = [
                demo_keys[i : i + DEMONSTRATION_PAIRS] for i in range(0, len(demo_keys), DEMONSTRATION_PAIRS)
            ]
            lesson = Lesson(RULE, tuple(self._demonstration(rng, kind, keys) for keys in demonstrations))
            teachings = {k: tutor.teach(lesson, k) for k in self.ks}
            keys = [k for k in NONCE_KEYS if k not in demo_keys]
            for n in self.pairs:
                rng = random.Random(f"{seed}/{kind}/{n}")
                for i in range(self.n_items):
                    probes += self._item(rng, seed, teachings, kind, keys, n, i)
        return probes

    @staticmethod
    def _demonstration(rng: random.Random, kind: str, keys: list[str]) -> str:
        pairs = list(zip(keys, rng.sample(VALUES[kind], len(keys)), strict=True))
        key, value = rng.choice(pairs)
        return f"{key_list(pairs, key)} {value}\n\n"

    def _item(
        self, rng: random.Random, seed: int, teachings: dict[int, str], kind: str, keys: list[str], n: int, i: int
    ) -> list[Probe]:
        """The probes of item ``i`` of the lists of ``n`` pairs (both conditions, every k)."""
        named = positions(n)
        position = list(named)[i % len(named)]
        index = named[position]
        values = rng.sample(VALUES[kind], n + 1)  # the last one is the rebinding's fresh value
        pairs = list(zip(rng.sample(keys, n), values[:n], strict=True))
        key, value = pairs[index]
        rebound_at = rng.randrange(index + 1, n + 1)
        others = [v for v in values[:n] if v != value]
        conditions = {
            "bind": (pairs, (value, *others), {"distance": n - 1 - index}),
            "rebinding": (
                [*pairs[:rebound_at], (key, values[n]), *pairs[rebound_at:]],
                (values[n], value, *others),
                {"distance": n - rebound_at, "overwritten": value, "rebinding_index": rebound_at},
            ),
        }
        meta = {"pairs": n, "position": position, "index": index, "values": kind, "key": key}
        return [
            Probe(
                family=self.name,
                item_id=f"{self.name}/{kind}/{n}/{i:03d}",
                condition=condition,
                prompt=teachings[k] + key_list(shown, key),
                candidates=tuple(f" {c}" for c in candidates),
                memorized=None,
                in_context=0,
                template_id=kind,
                entity=key,
                seed=seed,
                k=k,
                meta=meta | extra,
            )
            for condition, (shown, candidates, extra) in conditions.items()
            for k in self.ks
        ]
