"""One PHFE job, from a composed config to its run directory: model file, engine, probes, records, report.

Everything that can be wrong with the config (families and their settings, the tutor) is checked before
the model is loaded. Local files are written before W&B is touched, so a W&B failure loses nothing; a
finished job is skipped on rerun and an unfinished one continues from its records.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import resource
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from gguf import LlamaFileType
from omegaconf import DictConfig, OmegaConf

from phfe.data.family import Family
from phfe.data.suite import FAMILIES, suite_probes
from phfe.eval.evaluator import evaluate
from phfe.eval.metrics import summarize
from phfe.eval.report import summary_table, write_report
from phfe.inference import Engine, read_header, resolve_source
from phfe.inference.quantized import file_sha256, quantized_model
from phfe.models.tokenizer import metadata_key
from phfe.sinks.wandb_run import log_run
from phfe.tutors import SIMPLE_TUTORS, ModelTutor, Tutor

log = logging.getLogger(__name__)
RESULTS = "results.json"


class ConfigError(ValueError):
    """A config value PHFE cannot run with; the message names the key and what is allowed."""


def build_families(benchmark: DictConfig) -> list[Family]:
    """The families ``benchmark.families`` names, with their settings (checked against each family's fields)."""
    families = []
    for name, settings in benchmark.families.items():
        if name not in FAMILIES:
            raise ConfigError(f"benchmark.families.{name}: no such family; choose from {', '.join(FAMILIES)}")
        cls = FAMILIES[name]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        settings = {} if settings is None else OmegaConf.to_container(settings, resolve=True)
        for key in settings:
            if key not in fields:
                raise ConfigError(f"benchmark.families.{name}.{key}: no such setting; {name} takes {', '.join(fields)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
        try:
            families.append(cls(**values))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"benchmark.families.{name}: {exc}") from None
    if not families:
        raise ConfigError("benchmark.families is empty; name at least one family")
    return families


def make_tutor(benchmark: DictConfig, device: str, dtype: torch.dtype) -> Tutor:
    """The benchmark's tutor; a tutor model is built from ``benchmark.tutor_model``."""
    name = benchmark.tutor.value
    if name != "model":
        return SIMPLE_TUTORS[name]()
    if not benchmark.tutor_model:
        raise ConfigError("benchmark.tutor=model needs benchmark.tutor_model (the tutor model's source)")
    return ModelTutor(Engine.from_gguf(benchmark.tutor_model, device=device, dtype=dtype, memory_gb=0.5))


def _device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _file_type(value: int | None) -> str | None:
    try:
        return LlamaFileType(value).name
    except ValueError:
        return None if value is None else str(value)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("phfe", "torch", "gguf", "tokenizers", "transformers", "wandb", "hydra-core"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


def _write_json(path: Path, value: Any) -> None:
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_text(json.dumps(value, indent=1, default=str))
    os.replace(partial, path)


def run_job(
    cfg: DictConfig, run_dir: Path, job: str = "", overrides: list[str] | None = None, group: str | None = None
) -> dict[str, Any]:
    """Run (or finish, or skip) the job ``cfg`` describes in ``run_dir``; return its results."""
    run_dir.mkdir(parents=True, exist_ok=True)
    done = run_dir / RESULTS
    if cfg.resume and done.is_file() and json.loads(done.read_text()).get("status") == "finished":
        log.info("%s is finished already (resume=true): skipping", run_dir)
        return json.loads(done.read_text())
    families = build_families(cfg.benchmark)  # config errors surface before any model is loaded
    device, dtype = _device(cfg.model.device), getattr(torch, cfg.model.dtype.value)
    tutor = make_tutor(cfg.benchmark, device, dtype)
    started = time.perf_counter()

    source = resolve_source(cfg.model.source)
    path = quantized_model(source, cfg.q.type.value, progress=cfg.progress)
    log.info("model %s (%s), q=%s: %s", cfg.model.name, cfg.model.source, cfg.q.type.value, path)
    c = cfg.cache
    engine = Engine.from_gguf(
        path,
        device=device,
        dtype=dtype,
        num_blocks=c.num_blocks,
        memory_gb=c.memory_gb,
        block_size=c.block_size,
        prefix_caching=c.prefix_caching,
        max_batch_tokens=c.max_batch_tokens,
        attention=c.attention.value,
        cache_dtype=getattr(torch, c.dtype.value) if c.dtype else None,
    )
    loaded = time.perf_counter()
    log.info(
        "file and engine ready in %.1f s: %s, %s, attention %s; KV cache of %d blocks of %d tokens",
        loaded - started, device, dtype, engine.attention, engine.cache.num_blocks, engine.cache.block_size,
    )  # fmt: skip
    probes = [p for seed in cfg.benchmark.seeds for p in suite_probes(families, seed, tutor)]
    log.info("%d probes from %s, seeds %s", len(probes), ", ".join(f.name for f in families), list(cfg.benchmark.seeds))
    records = evaluate(engine, probes, records_path=run_dir / "records.jsonl", progress=cfg.progress)
    scored = time.perf_counter()
    stats = engine.stats
    log.info(
        "scored %d requests in %.1f s (%.1f/s); %d of %d tokens computed, prefix-cache hit rate %.2f",
        stats["requests"], scored - loaded, stats["requests"] / max(scored - loaded, 1e-9),
        stats["tokens_computed"], stats["tokens_requested"], stats["hit_rate"],
    )  # fmt: skip

    title = f"{cfg.model.name} q={cfg.q.type.value} cache={c.name} benchmark={cfg.benchmark.name}"
    plots = {k: v for k, v in write_report(records, run_dir, title=title).items() if v.suffix == ".png"}
    summary = summarize(records)
    header = read_header(path)
    results = {
        "status": "finished",
        "run": {"name": cfg.name, "job": job, "overrides": overrides or [], "seconds": scored - started},
        "model": {
            "name": cfg.model.name,
            "source": cfg.model.source,
            "path": str(source),
            "sha256": file_sha256(source),
            "architecture": header.metadata.get("general.architecture"),
            "parameters": sum(t.n_elements for t in header.tensors.values()),
        },
        "q": {
            "type": cfg.q.type.value,
            "file_type": _file_type(header.metadata.get("general.file_type")),  # e.g. MOSTLY_Q4_1 for a source
            "path": str(path),
            "sha256": file_sha256(path),
        },
        "cache": {
            **OmegaConf.to_container(c, resolve=True, enum_to_str=True),
            "num_blocks": engine.cache.num_blocks,  # as resolved: from memory_gb when not set
            "dtype": str(engine.cache.dtype),  # as resolved: the model's dtype when not set
        },
        "tokenizer": {"hash": metadata_key(header.metadata)},
        "engine": {"device": device, "dtype": str(dtype), "attention": engine.attention},
        "benchmark": OmegaConf.to_container(cfg.benchmark, resolve=True, enum_to_str=True),
        "versions": _versions(),
        "stats": {
            **stats,
            "load_seconds": loaded - started,
            "score_seconds": scored - loaded,
            "probes": len(probes),
            "requests_per_second": stats["requests"] / max(scored - loaded, 1e-9),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
        },
        "summary": summary,
    }
    _write_json(done, results)
    log.info("wrote %s", done)
    print(f"\n{title}\n\n{summary_table(summary)}\n\n{run_dir}")
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    tags = [f"model:{cfg.model.name}", f"q:{cfg.q.type.value}", f"cache:{c.name}", f"benchmark:{cfg.benchmark.name}"]
    log_run(
        run_dir,
        config,
        results,
        records,
        plots,
        mode=cfg.logger.wandb.value,
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=group,
        tags=tags,
        name=job or cfg.name,
    )
    return results
