"""`python -m phfe.run`: every config composes, bad overrides fail before any model loads, a tiny job runs
end to end, sweeps run (basic and joblib launchers), and an interrupted job resumes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from phfe.app import ConfigError, build_families
from phfe.config import register
from phfe.data.suite import default_suite, full_suite
from phfe.eval.evaluator import read_records
from tests.gguf_factory import TINY_MODELS, write_tiny_model
from tests.test_wandb_run import read_run

CONF = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("model", "q", "cache", "benchmark", "logger")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def composed(*overrides: str):
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=False)


@pytest.mark.parametrize(
    "override", [f"{g}={o}" for g in GROUPS for o in options(g)] + [f"+experiment={o}" for o in options("experiment")]
)
def test_every_config_composes_and_validates(override: str) -> None:
    overrides = [override, "model.source=x.gguf"] if override == "model=file" else [override]
    cfg = composed(*overrides)
    assert OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert build_families(cfg.benchmark)


def test_the_benchmark_presets_are_the_python_suites() -> None:
    for name, suite in (("default", default_suite()), ("full", full_suite())):
        built = build_families(composed(f"benchmark={name}").benchmark)
        assert [dataclasses.asdict(f) for f in built] == [dataclasses.asdict(f) for f in suite]


@pytest.mark.parametrize(
    ("families", "message"),
    [
        ({"no_such_family": {}}, "benchmark.families.no_such_family: no such family; choose from counterfactual_facts"),
        ({"binding": {"n_itemz": 3}}, r"benchmark.families.binding.n_itemz: no such setting; binding takes n_items"),
        ({"counterfactual_facts": {"ks": [99]}}, "benchmark.families.counterfactual_facts: "),
        ({}, "benchmark.families is empty"),
    ],
)
def test_family_settings_are_checked(families: dict, message: str) -> None:
    cfg = composed()
    cfg.benchmark.families = families
    with pytest.raises(ConfigError, match=message):
        build_families(cfg.benchmark)


def numbers(value: object) -> list[float]:
    """Every number in a nested JSON value, in order."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def phfe_run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "phfe.run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    root = tmp_path_factory.mktemp("run")
    model = write_tiny_model(root / "tiny.gguf", TINY_MODELS["llama"])
    env = dict(
        os.environ,
        PHFE_CACHE=str(root / "cache"),
        WANDB_MODE="offline",
        WANDB_DIR=str(root / "wandb"),
        WANDB_CONFIG_DIR=str(root / "wandb-config"),
        WANDB_CACHE_DIR=str(root / "wandb-cache"),
        WANDB_DATA_DIR=str(root / "wandb-data"),
        HYDRA_FULL_ERROR="1",
    )
    return root, env, str(model)


def test_bad_overrides_fail_fast_with_the_key_named(workspace) -> None:
    root, env, _ = workspace
    bad = phfe_run("q.type=q9", cwd=root, env=env)
    assert bad.returncode != 0 and "Invalid value 'q9', expected one of [source, f16" in bad.stderr
    unknown = phfe_run("cache.bogus=1", cwd=root, env=env)
    assert unknown.returncode != 0 and "Key 'bogus' not in 'CacheConfig'" in unknown.stderr
    family = phfe_run("model=file", "model.source=/no/such.gguf", "+benchmark.families.nope={}", cwd=root, env=env)
    assert family.returncode != 0 and "benchmark.families.nope: no such family" in family.stderr
    assert not (root / "cache" / "quantized").exists()  # nothing was loaded or made


def test_a_tiny_job_end_to_end(workspace) -> None:
    root, env, model = workspace
    done = phfe_run("model=file", f"model.source={model}", "benchmark=tiny", "name=e2e", cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (root / "outputs" / "runs" / "e2e").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and results["q"]["type"] == "source"
    assert results["model"]["architecture"] == "llama" and len(results["model"]["sha256"]) == 64
    assert results["stats"]["probes"] == len(read_records(run_dir / "records.jsonl")) > 0
    assert results["engine"]["dtype"] == results["cache"]["dtype"] == "torch.float32"  # as resolved
    assert results["cache"]["name"] == "default" and results["cache"]["num_blocks"] > 1
    log = (run_dir / "run.log").read_text()
    assert "probes from counterfactual_facts" in log and "prefix-cache hit rate" in log and "results.json" in log
    for name in ("summary.md", "summary.json", "conditions.png", ".hydra/config.yaml", "run.log"):
        assert (run_dir / name).exists(), name
    assert "| counterfactual_facts | conflicting |" in done.stdout  # the summary table ends the output
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def test_a_quantization_level_runs_on_a_made_file(workspace) -> None:
    root, env, model = workspace
    done = phfe_run("model=file", f"model.source={model}", "benchmark=tiny", "q=q8_0", "name=q", cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (root / "outputs" / "runs" / "q").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["q"]["type"] == "q8_0" and results["q"]["sha256"] != results["model"]["sha256"]
    assert results["q"]["file_type"] == "MOSTLY_Q8_0"
    assert Path(results["q"]["path"]).parent == root / "cache" / "quantized"


@pytest.mark.parametrize("launcher", ["basic", "local"])
def test_a_two_by_two_sweep(workspace, launcher: str) -> None:
    root, env, model = workspace
    args = ["-m", "model=file", f"model.source={model}", "benchmark=tiny", "q=source,q8_0", "cache=default,small"]
    done = phfe_run(*args, f"name=sweep-{launcher}", f"hydra/launcher={launcher}", cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    jobs = sorted((root / "outputs" / "multirun" / f"sweep-{launcher}").glob("*/results.json"))
    assert len(jobs) == 4
    combos = {(r["q"]["type"], r["cache"]["name"]) for r in (json.loads(p.read_text()) for p in jobs)}
    assert combos == {(q, c) for q in ("source", "q8_0") for c in ("default", "small")}
    for job in jobs:  # one W&B run per job, grouped by the sweep's name, tagged with its settings
        (sync_dir,) = (job.parent / "wandb").glob("offline-run-*")
        run = read_run(sync_dir)
        assert run["run"].run_group == f"sweep-{launcher}" and "model:file" in run["run"].tags
        assert run["config"]["q"]["type"] in ("source", "q8_0")


def test_a_rerun_skips_finished_jobs_and_resumes_an_interrupted_one(workspace) -> None:
    root, env, model = workspace
    args = ["model=file", f"model.source={model}", "benchmark=tiny", "name=resume"]
    assert phfe_run(*args, cwd=root, env=env).returncode == 0
    (run_dir,) = (root / "outputs" / "runs" / "resume").iterdir()
    finished = (run_dir / "results.json").read_text()
    again = phfe_run(*args, cwd=root, env=env)
    assert (
        again.returncode == 0 and "finished already" in again.stdout + again.stderr + (run_dir / "run.log").read_text()
    )
    assert (run_dir / "results.json").read_text() == finished
    # interrupt: no results, half of the records (and a torn line)
    records = (run_dir / "records.jsonl").read_text().splitlines()
    (run_dir / "results.json").unlink()
    (run_dir / "records.jsonl").write_text("\n".join(records[: len(records) // 2]) + '\n{"family": "torn')
    resumed = phfe_run(*args, cwd=root, env=env)
    assert resumed.returncode == 0, resumed.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert len(read_records(run_dir / "records.jsonl")) == len(records)
    first = json.loads(finished)
    assert results["stats"]["requests"] < first["stats"]["requests"]  # only the missing half was scored
    # the same metrics, up to the float noise of scoring the rest in other batches
    assert numbers(results["summary"]) == pytest.approx(numbers(first["summary"]), abs=1e-3, nan_ok=True)


@pytest.mark.parametrize("launcher", ["local", "slurm", "submitit_local"])
def test_launcher_presets_compose(launcher: str) -> None:
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "_target_" in cfg.hydra.launcher
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.timeout_min == 240
