"""Sweep reports on a synthetic sweep written to disk: two models at three quantization levels, where the
quantized jobs flip chosen winners of the source records, plus unfinished jobs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from phfe.eval.metrics import summarize
from phfe.eval.report import _cell
from phfe.eval.sweep import (
    load_sweep,
    paired_comparisons,
    paired_table,
    plot_default,
    plot_metric_vs_quantization,
    sweep_table,
    sweep_tables,
    unfinished_jobs,
    write_sweep_report,
)
from phfe.report import main

FACTS = "counterfactual_facts"


def rec(family: str, item: str, condition: str, k: int, logprobs: list[float], memorized, in_context, seed=0):
    """A record as the evaluator writes it (winners from the log-likelihoods; one token per candidate)."""
    winner = max(range(len(logprobs)), key=logprobs.__getitem__)
    return {
        "family": family,
        "item_id": item,
        "condition": condition,
        "k": k,
        "seed": seed,
        "template_id": f"t{int(item[1:]) % 2}",
        "entity": item,
        "prompt": f"Q: {item}?\nA:",
        "candidates": [" A", " B", " C"][: len(logprobs)],
        "logprobs": logprobs,
        "token_logprobs": [[lp] for lp in logprobs],
        "n_tokens": [1] * len(logprobs),
        "memorized": memorized,
        "in_context": in_context,
        "target": in_context if in_context is not None else memorized,
        "winner": winner,
        "winner_normalized": winner,
        "meta": {},
    }


KNOWS, UNKNOWN = [-1.0, -3.0, -4.0], [-2.0, -1.0, -5.0]  # candidate 0 memorized, 1 in context, 2 distractor
FOLLOWS, RESISTS, DISTRACTED = [-2.0, -1.0, -4.0], [-1.0, -2.0, -4.0], [-3.0, -2.0, -1.0]


def source_records(seed: int = 0) -> list[dict]:
    """Six facts (i0-i3 known, i4-i5 not; in context i0-i3 follow, i4 resists, i5 picks the distractor but
    ranks the in-context answer above the memorized one) and two flipped-label items at k = 1 and 4 (both
    follow)."""
    records = []
    for i, (closed, conflicting) in enumerate([(KNOWS, FOLLOWS)] * 4 + [(UNKNOWN, RESISTS), (UNKNOWN, DISTRACTED)]):
        records.append(rec(FACTS, f"i{i}", "closed_book", 4, closed, 0, None, seed))
        records.append(rec(FACTS, f"i{i}", "conflicting", 4, conflicting, 0, 1, seed))
    for k in (1, 4):
        records += [rec("flipped_labels", f"l{i}", "flipped", k, [-2.0, -1.0], 0, 1, seed) for i in range(2)]
    return records


def flipped(records: list[dict], flips: set[tuple[str, str]]) -> list[dict]:
    """The records with the memorized and in-context log-likelihoods swapped for the (condition, item) in
    ``flips``: a probe that followed the context now resists it, and the other way round."""
    out = []
    for r in records:
        if (r["condition"], r["item_id"]) in flips:
            lp = [r["logprobs"][1], r["logprobs"][0], *r["logprobs"][2:]]
            r = rec(r["family"], r["item_id"], r["condition"], r["k"], lp, r["memorized"], r["in_context"], r["seed"])
        out.append(r)
    return out


# (model, q): flipped probes and the job's directory (nested, in no useful order)
JOBS = {
    ("beta", "q4_0"): ({("conflicting", "i4")}, "0"),  # conflicting: c = 1
    ("alpha", "q4_0"): (
        {("conflicting", "i0"), ("conflicting", "i1"), ("conflicting", "i4"), ("closed_book", "i0")},
        "1",
    ),
    ("alpha", "source"): (set(), "a/2"),
    ("beta", "source"): (set(), "a/b/3"),
    ("alpha", "q8_0"): ({("conflicting", "i0")}, "4"),  # conflicting: b = 1
    ("beta", "q8_0"): (set(), "5"),
}


def write_job(root: Path, where: str, model: str, q: str, records: list[dict], status: str = "finished") -> Path:
    """A job directory as :mod:`phfe.app` leaves it: records, and results once finished."""
    job = root / where
    job.mkdir(parents=True)
    (job / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    seeds = sorted({r["seed"] for r in records})
    results = {
        "status": status,
        "run": {"name": "sweep", "job": where, "overrides": [f"model={model}", f"q={q}"], "seconds": 12.5},
        "model": {"name": model, "source": f"hf://{model}", "path": "", "sha256": "", "architecture": "llama"},
        "q": {"type": q, "path": "", "sha256": ""},
        "cache": {"name": "paged"},
        "tokenizer": {"hash": "x"},
        "engine": {},
        "benchmark": {"name": "default", "seeds": seeds},
        "versions": {},
        "stats": {
            "tokens_requested": 100,
            "tokens_computed": 40,
            "hit_rate": 0.6,
            "requests_per_second": 250.0,
            "load_seconds": 1.0,
            "score_seconds": 2.0,
        },
        "summary": summarize(records),
    }
    (job / "results.json").write_text(json.dumps(results))
    return job


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    for (model, q), (flips, where) in JOBS.items():
        write_job(root, where, model, q, flipped(source_records(), flips))
    (root / "6").mkdir()
    (root / "6" / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in source_records()[:3]))
    write_job(root, "a/7", "gamma", "source", source_records(), status="running")
    return root


def records_of(model: str, q: str) -> list[dict]:
    return flipped(source_records(), JOBS[(model, q)][0])


def test_jobs_are_found_ordered_and_unfinished_ones_reported(sweep: Path) -> None:
    jobs = load_sweep(sweep)
    assert [j.label for j in jobs] == [f"{m} {q}" for m in ("alpha", "beta") for q in ("source", "q8_0", "q4_0")]
    assert [(j.model, j.q, j.cache, j.seeds) for j in jobs][2] == ("alpha", "q4_0", "paged", [0])
    assert jobs[2].dir == sweep / "1" and jobs[2].records == records_of("alpha", "q4_0")
    assert unfinished_jobs(sweep) == [sweep / "6", sweep / "a" / "7"]


def table_cells(table: str) -> dict[tuple[str, str, str], dict[str, str]]:
    lines = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
    header = lines[0]
    return {tuple(row[:3]): dict(zip(header, row, strict=True)) for row in lines[2:]}


def test_table_cells_are_the_summaries(sweep: Path) -> None:
    jobs = load_sweep(sweep)
    accuracy = table_cells(sweep_table(jobs, "accuracy"))
    assert list(accuracy) == [
        (FACTS, "closed_book", "4"), (FACTS, "conflicting", "4"), ("flipped_labels", "flipped", "1"),
        ("flipped_labels", "flipped", "4"),
    ]  # fmt: skip
    rows = {(r["family"], r["condition"]): r for r in summarize(records_of("alpha", "q4_0")) if r["k"] == 4}
    for metric in ("accuracy", "cfr", "soft_memorization_ratio"):
        cells = table_cells(sweep_table(jobs, metric))
        assert cells[(FACTS, "conflicting", "4")]["alpha q4_0"] == _cell(rows[(FACTS, "conflicting")][metric])
    assert accuracy[(FACTS, "conflicting", "4")]["alpha q4_0"].startswith("0.50 [")  # i2, i3, i4 pick the context
    cfr = table_cells(sweep_table(jobs, "cfr"))
    assert cfr[(FACTS, "conflicting", "4")]["alpha q4_0"].startswith("0.67 [")  # and i5 ranks it above memory
    assert (FACTS, "closed_book", "4") not in cfr  # closed book teaches nothing: no row
    memorized = table_cells(sweep_table(jobs, "memorized_rate"))
    assert memorized[(FACTS, "closed_book", "4")]["alpha q4_0"].startswith("0.50 [")  # i0 forgotten
    assert [line for line in sweep_tables(jobs).splitlines() if line.startswith("### ")] == [
        "### accuracy", "### memorized", "### CFR", "### soft M_R",
    ]  # fmt: skip


def test_paired_comparisons_count_the_flips(sweep: Path) -> None:
    comparisons = {c["job"]: c for c in paired_comparisons(load_sweep(sweep))}
    assert sorted(comparisons) == ["alpha q4_0", "alpha q8_0", "beta q4_0", "beta q8_0"]
    assert {c["reference"] for c in comparisons.values()} == {"alpha source", "beta source"}

    def groups(job: str) -> dict[tuple[str, int], dict]:
        return {(g["condition"], g["k"]): g for g in comparisons[job]["groups"]}

    alpha4 = groups("alpha q4_0")
    test = alpha4[("conflicting", 4)]["mcnemar"]
    assert (test["b"], test["c"], test["flip_rate"]) == (2, 1, pytest.approx(3 / 6))
    assert alpha4[("conflicting", 4)]["follows_context"]["difference"] == pytest.approx(4 / 6 - 5 / 6)
    assert (alpha4[("closed_book", 4)]["mcnemar"]["b"], alpha4[("closed_book", 4)]["mcnemar"]["c"]) == (1, 0)
    assert "follows_context" not in alpha4[("closed_book", 4)]
    alpha8 = groups("alpha q8_0")[("conflicting", 4)]["mcnemar"]
    assert (alpha8["b"], alpha8["c"], alpha8["flip_rate"]) == (1, 0, pytest.approx(1 / 6))
    beta4 = groups("beta q4_0")[("conflicting", 4)]["mcnemar"]
    assert (beta4["b"], beta4["c"]) == (0, 1)
    assert all(g["mcnemar"]["flip_rate"] == 0 for g in groups("beta q8_0").values())
    assert comparisons["alpha q4_0"]["n_paired"] == 6 + 6 + 2 + 2
    markdown = paired_table(list(comparisons.values()))
    assert "### alpha q4_0 vs alpha source" in markdown
    assert "| counterfactual_facts | conflicting | 4 | 6 | 2 | 1 |" in markdown


def test_unpaired_jobs_are_noted(tmp_path: Path) -> None:
    write_job(tmp_path, "0", "gamma", "source", source_records(seed=0))
    write_job(tmp_path, "1", "gamma", "q4_0", source_records(seed=1))  # other items: nothing in common
    write_job(tmp_path, "2", "delta", "q8_0", source_records())  # no source job
    comparisons = {c["job"]: c for c in paired_comparisons(load_sweep(tmp_path))}
    assert comparisons["gamma q4_0"]["groups"] == [] and comparisons["gamma q4_0"]["n_paired"] == 0
    assert comparisons["delta q8_0"]["reference"] is None
    markdown = paired_table(list(comparisons.values()))
    assert "No probes in common" in markdown and "No source job of delta" in markdown


def test_plots_are_written(sweep: Path, tmp_path: Path) -> None:
    jobs = load_sweep(sweep)
    path = plot_metric_vs_quantization(jobs, tmp_path / "cfr.png", FACTS, "conflicting", "cfr")
    assert path is not None and path.stat().st_size > 0
    assert plot_metric_vs_quantization(jobs, tmp_path / "k1.png", "flipped_labels", "flipped", "cfr", k=1)
    assert plot_metric_vs_quantization(jobs, tmp_path / "none.png", "binding", "bind", "accuracy") is None
    assert not (tmp_path / "none.png").exists()
    assert plot_default(jobs, tmp_path / "default.png").stat().st_size > 0


def test_report_files_and_the_long_csv(sweep: Path, tmp_path: Path) -> None:
    paths = write_sweep_report(sweep, tmp_path / "out")
    assert set(paths) == {"report", "summary_csv", "quantization"}
    assert all(p.parent == tmp_path / "out" and p.stat().st_size > 0 for p in paths.values())
    report = paths["report"].read_text()
    for section in ("## Jobs", "## Metrics", "![quantization](quantization.png)", "## Paired comparisons"):
        assert section in report
    assert "Unfinished, left out (2)" in report and f"{sweep / '6'} (probes scored: 3)" in report
    with open(paths["summary_csv"]) as f:
        rows = list(csv.DictReader(f))
    # per job, the metrics that apply: closed book 3 (accuracy, per token, memorized), conflicting 7 (all),
    # flipped labels 6 at each k (all but persuasion: no closed-book probe)
    assert len(rows) == 6 * (3 + 7 + 6 + 6)
    assert list(rows[0]) == ["model", "q", "cache", "family", "condition", "k", "metric", "value", "low", "high", "n"]
    wanted = ("alpha", "q8_0", "conflicting", "cfr")
    cfr = next(r for r in rows if (r["model"], r["q"], r["condition"], r["metric"]) == wanted)
    assert float(cfr["value"]) == pytest.approx(4 / 6) and cfr["n"] == "6"  # i0 no longer follows


def test_an_empty_sweep_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no finished job"):
        write_sweep_report(tmp_path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phfe.report", *args], capture_output=True, text=True, timeout=120)


def test_the_command_line(sweep: Path, tmp_path: Path) -> None:
    done = run_cli(str(sweep), "--out", str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr
    assert "| alpha q4_0 | alpha | q4_0 | paged |" in done.stdout and "### CFR" in done.stdout
    assert (tmp_path / "report" / "sweep_summary.csv").is_file()
    empty = tmp_path / "empty"
    (empty / "0").mkdir(parents=True)
    failed = run_cli(str(empty))
    assert failed.returncode == 2 and f"{empty}: no finished job" in failed.stderr


def test_a_missing_directory_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "missing")])
    assert exit_.value.code == 2 and f"{tmp_path / 'missing'}: no such directory" in capsys.readouterr().err
