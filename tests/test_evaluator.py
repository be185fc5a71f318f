"""The evaluator: one scoring pass over every probe, records that equal direct scoring, and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phfe.data.probes import Probe, from_dataset, to_dataset
from phfe.eval.evaluator import evaluate, read_records
from phfe.eval.report import write_report
from phfe.inference import Engine, KVCacheManager
from phfe.models import build_model, load_tokenizer
from tests.gguf_factory import TINY_MODELS, write_tiny_model


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    path = write_tiny_model(tmp_path_factory.mktemp("eval") / "llama.gguf", TINY_MODELS["llama"])
    model = build_model(path)
    a = model.args
    cache = KVCacheManager(512, 8, a.n_layers, a.n_kv_heads, a.head_dim)
    return Engine(model, load_tokenizer(path, cache_dir=tmp_path_factory.mktemp("tok")), cache)


def probes() -> list[Probe]:
    shots = "Q: capital of Spain?\nA: Madrid\n\n"
    out = []
    for item, (country, true, fake) in enumerate([("France", "Paris", "Lyon"), ("Japan", "Tokyo", "Osaka")]):
        question = f"Q: capital of {country}?\nA:"
        for condition, context, in_context in (
            ("closed_book", "", None),
            ("conflicting", f"Context: The capital of {country} is {fake}.\n", 1),
        ):
            out.append(
                Probe(
                    "facts",
                    str(item),
                    condition,
                    shots + context + question,
                    (f" {true}", f" {fake}", " Rome"),
                    0,
                    in_context,
                    template_id="capital",
                    entity=country,
                )
            )
    return out


def test_records_equal_direct_scoring(engine: Engine) -> None:
    records = evaluate(engine, probes(), progress=False)
    assert [r["condition"] for r in records] == [p.condition for p in probes()]
    for probe, r in zip(probes(), records, strict=True):
        direct = engine.score([(probe.prompt, c) for c in probe.candidates])
        assert r["logprobs"] == pytest.approx([d.logprob for d in direct], abs=1e-4)
        assert r["winner"] == max(range(3), key=r["logprobs"].__getitem__)
        assert r["target"] == probe.target and len(r["token_logprobs"][0]) == r["n_tokens"][0]


def test_resume_skips_finished_probes_and_survives_a_torn_line(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    first = evaluate(engine, probes()[:2], records_path=path, progress=False)
    with open(path, "a") as f:
        f.write('{"family": "facts", "item_id": "1", "cond')  # an interrupted write
    requested = engine.stats["tokens_requested"]
    everything = evaluate(engine, probes(), records_path=path, progress=False)
    assert everything[:2] == first
    assert len(read_records(path)) == 4
    assert all(json.loads(line) for line in path.read_text().splitlines())  # the torn line is gone
    new_pairs = [engine.encode_pair(p.prompt, c) for p in probes()[2:] for c in p.candidates]
    assert engine.stats["tokens_requested"] - requested == sum(len(c) + len(x) for c, x in new_pairs)


def test_probes_round_trip_through_datasets() -> None:
    original = probes()
    assert from_dataset(to_dataset(original)) == original


def test_report_files(engine: Engine, tmp_path: Path) -> None:
    paths = write_report(evaluate(engine, probes(), progress=False), tmp_path, title="tiny")
    assert paths["summary_md"].read_text().startswith("# tiny")
    assert "| facts | conflicting | 0 |" in paths["summary_md"].read_text()
    assert paths["conditions"].stat().st_size > 1000 and paths["cfr_vs_knowledge"].exists()
    assert len(json.loads(paths["summary_json"].read_text())) == 2
