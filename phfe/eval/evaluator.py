"""Score every probe's candidates through one backend and record the outcome of each probe.

All (prompt, candidate) pairs of a chunk go to the backend in one call, so the engine's prefix cache is
shared across families, conditions and candidates. With ``records_path`` each finished chunk is appended
to a JSON-lines file and a rerun skips the probes already there: an interrupted evaluation resumes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from phfe.data.probes import Probe
from phfe.inference.backend import ScoringBackend


def probe_key(probe: Probe | dict[str, Any]) -> str:
    """The identity of a probe within a run: family, seed, item, condition and k."""
    get = probe.get if isinstance(probe, dict) else lambda name: getattr(probe, name)
    return f"{get('family')}/s{get('seed')}/{get('item_id')}/{get('condition')}/k{get('k')}"


def record(probe: Probe, results: Sequence[Any]) -> dict[str, Any]:
    """One probe's row: the probe itself, each candidate's log-likelihood (summed and per token), and the
    winners by summed and by per-token mean log-likelihood."""
    logprobs = [r.logprob for r in results]
    n_tokens = [r.n_tokens for r in results]
    mean_logprobs = [lp / max(n, 1) for lp, n in zip(logprobs, n_tokens, strict=True)]
    row = dataclasses.asdict(probe)
    row.update(
        candidates=list(probe.candidates),
        target=probe.target,
        logprobs=logprobs,
        token_logprobs=[list(r.token_logprobs) for r in results],
        n_tokens=n_tokens,
        greedy=[r.is_greedy for r in results],
        winner=max(range(len(logprobs)), key=logprobs.__getitem__),
        winner_normalized=max(range(len(mean_logprobs)), key=mean_logprobs.__getitem__),
    )
    return row


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records written by :func:`evaluate` (a truncated last line, from an interrupted write, is ignored)."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def _rewrite(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    partial = Path(f"{path}.partial-{os.getpid()}")
    partial.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.replace(partial, path)


def _chunks(items: Sequence[Probe], size: int) -> Iterator[Sequence[Probe]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def evaluate(
    backend: ScoringBackend,
    probes: Sequence[Probe],
    records_path: str | os.PathLike[str] | None = None,
    chunk_size: int = 2048,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Score ``probes`` and return one record per probe (in ``probes`` order)."""
    done: dict[str, dict[str, Any]] = {}
    if records_path is not None and Path(records_path).exists():
        rows = read_records(records_path)
        done = {probe_key(r): r for r in rows}
        _rewrite(records_path, rows)  # drops a line cut short by an interrupted write
    todo = [p for p in probes if probe_key(p) not in done]
    out = open(records_path, "a") if records_path is not None else None  # noqa: SIM115 (closed below)
    try:
        with tqdm(total=len(probes), initial=len(probes) - len(todo), desc="probes", disable=not progress) as bar:
            for chunk in _chunks(todo, chunk_size):
                pairs = [(p.prompt, c) for p in chunk for c in p.candidates]
                results = iter(backend.score(pairs, progress=progress))
                for probe in chunk:
                    row = record(probe, [next(results) for _ in probe.candidates])
                    done[probe_key(probe)] = row
                    if out is not None:
                        out.write(json.dumps(row) + "\n")
                if out is not None:
                    out.flush()
                bar.update(len(chunk))
    finally:
        if out is not None:
            out.close()
    return [done[probe_key(p)] for p in probes]
