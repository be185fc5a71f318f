"""The benchmark suite: the task families, at default (minutes on a laptop CPU) or full sizes."""

from __future__ import annotations

import os
from collections.abc import Sequence

from phfe.data.binding import Binding
from phfe.data.external import ExternalFacts
from phfe.data.facts import CounterfactualFacts
from phfe.data.family import Family
from phfe.data.labels import FlippedLabels
from phfe.data.probes import Probe
from phfe.data.rule_worlds import RuleWorlds
from phfe.data.sequences import PriorSequences
from phfe.data.verbatim import VerbatimMemory
from phfe.tutors.base import Tutor

FAMILIES: dict[str, type[Family]] = {
    family.name: family
    for family in (
        CounterfactualFacts,
        FlippedLabels,
        RuleWorlds,
        Binding,
        PriorSequences,
        VerbatimMemory,
        ExternalFacts,
    )
}


def default_suite() -> list[Family]:
    """All six families at sizes that score in a few minutes on a 2-core CPU with SmolLM2-135M."""
    return [
        CounterfactualFacts(n_items=60, ks=(4,)),
        FlippedLabels(n_items=8, ks=(0, 1, 4, 8), order_seeds=1),
        RuleWorlds(n_items=12, ks=(0, 4), n_checks=6),
        Binding(n_items=6, pairs=(2, 8)),
        PriorSequences(n_items=6),
        VerbatimMemory(passages_per_text=3),
    ]


def full_suite() -> list[Family]:
    """All six families at their full default sizes (every k, more items, more order seeds)."""
    return [
        CounterfactualFacts(n_items=200, ks=(0, 1, 2, 4, 8)),
        FlippedLabels(n_items=16, ks=(0, 1, 2, 4, 8, 16), order_seeds=3),
        RuleWorlds(n_items=40, ks=(0, 1, 2, 4, 8, 16)),
        Binding(n_items=40),
        PriorSequences(n_items=12, ks=(0, 2, 4)),
        VerbatimMemory(),
    ]


def suite_probes(
    families: Sequence[Family], seed: int, tutor: Tutor, cache_dir: str | os.PathLike[str] | None = None
) -> list[Probe]:
    """Every family's probes for ``seed`` and ``tutor`` (each cached on disk), in family order."""
    return [probe for family in families for probe in family.probes(seed, tutor, cache_dir)]
