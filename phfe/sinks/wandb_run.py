"""Log one finished PHFE job to Weights & Biases as one run (offline by default).

The job's plain files are the record of truth; W&B is a mirror of them. Any W&B failure is logged as a
warning and never reaches the caller, so it cannot lose or break the local results.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import wandb

log = logging.getLogger(__name__)

RECORD_COLUMNS = (
    "family", "condition", "k", "seed", "item_id", "template_id", "entity", "prompt",
    "candidates", "logprobs", "winner", "target", "memorized", "in_context",
)  # fmt: skip
IDENTITY_KEYS = ("model", "q", "tokenizer", "versions")
MAX_TAG_LENGTH = 64  # W&B rejects longer tags at init


def log_run(
    run_dir: Path,
    config: dict,
    results: dict,
    records: list[dict],
    plots: dict[str, Path],
    mode: str = "offline",
    project: str = "phfe",
    entity: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    name: str | None = None,
) -> Path | None:
    """Log a job's config, summary metrics, records table and plots as one finished W&B run.

    `mode` is "offline" (files under `run_dir / "wandb"`, no network), "online" or "disabled" (nothing
    written). Returns the W&B run's directory (`offline-run-*` or `run-*`), or None when disabled or
    when anything failed (the failure is logged as a warning, never raised). wandb-core finishes writing the
    run's `.wandb` file moments after this returns (at the latest when the process exits).
    """
    if mode == "disabled":
        return None
    try:
        if mode == "offline":
            # wandb's own usage telemetry follows the process-wide settings, not init's mode: without this
            # it posts to the W&B API at interpreter exit even for offline runs
            wandb.setup(settings=wandb.Settings(mode="offline"))
        payload = {"records": records_table(records)}
        payload.update({f"plots/{key}": wandb.Image(str(path)) for key, path in sorted(plots.items())})
        identity = {key: results[key] for key in IDENTITY_KEYS if key in results}
        settings = wandb.Settings(silent=True, console="off", disable_git=True, save_code=False, x_disable_stats=True)
        with wandb.init(
            project=project,
            entity=entity,
            mode=mode,
            dir=run_dir,
            config={**config, "identity": identity},
            group=group,
            tags=[tag[:MAX_TAG_LENGTH] for tag in tags or [] if tag],
            name=name,
            reinit="finish_previous",  # joblib reuses worker processes: never continue another job's run
            settings=settings,
        ) as run:
            run.log(payload)
            run.summary.update(summary_metrics(results))
            return Path(run.settings.sync_dir)
    except Exception:
        log.warning("W&B logging failed for %s; the local results are unaffected", run_dir, exc_info=True)
        return None


def summary_metrics(results: dict) -> dict[str, float]:
    """Flatten the results' summary rows and perf stats into finite numbers keyed for the W&B summary.

    A row's metric lands under "{family}/{condition}/k{k}/{metric}" with "_low"/"_high" bounds and "/n";
    its known-only metrics under ".../known/{metric}"; `stats` under "perf/...". NaN/inf are left out.
    """
    out: dict[str, float] = {}
    for row in results.get("summary", []):
        prefix = f"{row['family']}/{row['condition']}/k{row['k']}"
        _put(out, f"{prefix}/n_probes", row.get("n_probes"))
        _put(out, f"{prefix}/n_known", row.get("n_known"))
        _put_metrics(out, prefix, row)
        _put_metrics(out, f"{prefix}/known", row.get("known") or {})
    _put_numbers(out, "perf", results.get("stats", {}))
    return out


def records_table(records: list[dict]) -> wandb.Table:
    """One row per probe record; candidates and logprobs joined with " | " so NaN/inf never break typing."""
    rows = []
    for record in records:
        row = {column: record.get(column) for column in RECORD_COLUMNS}
        row["candidates"] = " | ".join(record["candidates"])
        row["logprobs"] = " | ".join(f"{logprob:.4f}" for logprob in record["logprobs"])
        rows.append(list(row.values()))
    return wandb.Table(columns=list(RECORD_COLUMNS), data=rows, allow_mixed_types=True)


def _put_metrics(out: dict[str, float], prefix: str, metrics: dict) -> None:
    for metric, interval in sorted(metrics.items()):
        if isinstance(interval, dict) and "value" in interval and _finite(interval["value"]):
            _put(out, f"{prefix}/{metric}", interval["value"])
            _put(out, f"{prefix}/{metric}_low", interval.get("low"))
            _put(out, f"{prefix}/{metric}_high", interval.get("high"))
            _put(out, f"{prefix}/{metric}/n", interval.get("n"))


def _put_numbers(out: dict[str, float], prefix: str, values: dict) -> None:
    for key, value in sorted(values.items()):
        if isinstance(value, dict):
            _put_numbers(out, f"{prefix}/{key}", value)
        else:
            _put(out, f"{prefix}/{key}", value)


def _put(out: dict[str, float], key: str, value: Any) -> None:
    if _finite(value):
        out[key] = value


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
