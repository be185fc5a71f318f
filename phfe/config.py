"""Structured schemas of `python -m phfe.run`'s config groups (model, q, cache, benchmark, logger).

Hydra validates every composed config against these dataclasses: a wrong type, an unknown key or a value
outside an enumeration is an error naming the key (and the allowed values) before any model is loaded.
Family settings inside ``benchmark.families`` are checked by :func:`phfe.app.build_families`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


class Dtype(Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class QuantType(Enum):
    """``source`` runs the file as it is; the others run a GGUF file of that type made from it."""

    source = "source"
    f16 = "f16"
    bf16 = "bf16"
    q8_0 = "q8_0"
    q5_1 = "q5_1"
    q5_0 = "q5_0"
    q4_1 = "q4_1"
    q4_0 = "q4_0"


class TutorName(Enum):
    none = "none"
    rule = "rule"
    demonstrations = "demonstrations"
    model = "model"


class Attention(Enum):
    auto = "auto"
    sdpa = "sdpa"
    flex = "flex"
    flex_compiled = "flex_compiled"


class WandbMode(Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


@dataclass
class ModelConfig:
    name: str = MISSING
    source: str = MISSING  # a path, pypi://..., hf://... or a short name (see phfe.inference.sources)
    dtype: Dtype = Dtype.float32  # compute dtype
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N


@dataclass
class QuantConfig:
    type: QuantType = QuantType.source


@dataclass
class CacheConfig:
    name: str = MISSING
    block_size: int = 16
    num_blocks: int | None = None  # None: as many as memory_gb holds
    memory_gb: float = 1.0
    dtype: Dtype | None = None  # None: the compute dtype
    prefix_caching: bool = True
    max_batch_tokens: int = 2048
    attention: Attention = Attention.auto


@dataclass
class BenchmarkConfig:
    name: str = MISSING
    families: dict[str, Any] = field(default_factory=dict)  # family name -> its settings
    tutor: TutorName = TutorName.demonstrations
    tutor_model: str | None = None  # the tutor model's source, for tutor=model
    seeds: list[int] = field(default_factory=lambda: [0])


@dataclass
class LoggerConfig:
    wandb: WandbMode = WandbMode.offline
    project: str = "phfe"
    entity: str | None = None


@dataclass
class RunConfig:
    name: str = "default"  # runs go to outputs/runs/<name>/<overrides>, sweeps to outputs/multirun/<name>/...
    resume: bool = True  # a finished job is skipped; an unfinished one continues from its records
    progress: bool = True
    model: ModelConfig = MISSING
    q: QuantConfig = MISSING
    cache: CacheConfig = MISSING
    benchmark: BenchmarkConfig = MISSING
    logger: LoggerConfig = MISSING


def _dirname(overrides: str) -> str:
    """A job's override string as one safe directory name (sources may hold slashes)."""
    return "".join(c if c.isalnum() or c in "=,._-+" else "_" for c in overrides) or "defaults"


def register() -> None:
    """Put the schemas into Hydra's ConfigStore (the YAML files in conf/ extend them) and the resolvers."""
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for group, schema in (
        ("model", ModelConfig),
        ("q", QuantConfig),
        ("cache", CacheConfig),
        ("benchmark", BenchmarkConfig),
        ("logger", LoggerConfig),
    ):
        cs.store(group=group, name=f"{group}_schema", node=schema)
    if not OmegaConf.has_resolver("phfe_dirname"):
        OmegaConf.register_new_resolver("phfe_dirname", _dirname)
