"""The model file a ``q`` level runs on: the source itself, or a GGUF of that type made once and cached."""

from __future__ import annotations

import os
from pathlib import Path

from phfe.inference.requantize import requantize
from phfe.inference.sources import default_cache_dir, sha256_file


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The file's sha256, from its ``.sha256`` sidecar when a verified download left one."""
    sidecar = Path(f"{path}.sha256")
    if sidecar.is_file():
        return sidecar.read_text().split()[0]
    return sha256_file(path)


def quantized_model(
    source: str | os.PathLike[str], q: str, cache_dir: str | os.PathLike[str] | None = None, progress: bool = True
) -> Path:
    """``source`` for ``q == "source"``; else ``<cache>/quantized/<source sha256>-<q>.gguf``, written by
    :func:`phfe.inference.requantize.requantize` the first time (atomically)."""
    if q == "source":
        return Path(source)
    digest = file_sha256(source)
    target = Path(cache_dir or default_cache_dir()) / "quantized" / f"{digest[:16]}-{q}.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        requantize(source, target, q, progress=progress)
    return target
