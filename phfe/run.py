"""``python -m phfe.run [overrides]`` (``-m`` for a sweep): compose the config with Hydra, run the job."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from phfe.config import register

register()


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Hydra's entry point; returns the run's mean accuracy (what sweepers optimize, if one is used)."""
    from phfe.app import run_job  # after Hydra has validated the config: a bad override costs no import

    hc = HydraConfig.get()
    sweep = hc.mode == RunMode.MULTIRUN
    results = run_job(
        cfg,
        Path(hc.runtime.output_dir),
        job=hc.job.override_dirname,
        overrides=list(hc.overrides.task),
        group=cfg.name if sweep else None,
    )
    accuracies = [row["accuracy"]["value"] for row in results["summary"] if row["accuracy"]["n"]]
    return sum(accuracies) / len(accuracies) if accuracies else None


if __name__ == "__main__":
    main()
