"""The header and output every benchmark script shares: machine, versions, date and command, then the table."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from phfe.inference import KNOWN_SOURCES


def cpu_name() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def script_parser(doc: str, out: Path | None = None) -> argparse.ArgumentParser:
    """The arguments every script takes: ``--models`` (known sources, default all) and ``--out``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(KNOWN_SOURCES))
    parser.add_argument("--out", type=Path, default=out, help="also write the report here")
    return parser


def header(title: str, packages: tuple[str, ...] = ("torch", "gguf", "transformers")) -> list[str]:
    """Markdown lines naming what the numbers below were measured on, and how to measure them again."""
    versions = ", ".join(f"{p} {_version(p)}" for p in packages)
    return [
        f"# {title}",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"{platform.system()} {platform.release()}",
        f"- versions: python {platform.python_version()}, {versions}",
        f"- command: `python {' '.join(sys.argv)}`",
    ]


def emit(lines: list[str], out: Path | None) -> None:
    """Print the report, and write it to ``out`` when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
