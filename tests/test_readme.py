"""The README is the front door: its commands are what CI runs, and its Python examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = next(block.strip() for block in code_blocks("bash") if "pytest" in block)
    ci_commands = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert test_command in ci_commands


def test_inspect_cli_runs(all_types_gguf: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "phfe.inspect", str(all_types_gguf), "--tensors"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "q6_k.3x512" in done.stdout and "test.array.string" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "phfe.inspect", "no/such.gguf"], capture_output=True, text=True)
    assert missing.returncode == 1 and "no/such.gguf" in missing.stderr


@pytest.mark.real_model
@pytest.mark.parametrize("index", range(len(code_blocks("python"))))
def test_python_examples_run_as_written(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    block = code_blocks("python")[index]
    printed = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    expected = [m.group(1).strip() for m in re.finditer(r"print\(.*\)\s+# (.*)", block)]
    lines = printed.stdout.splitlines()
    for line, comment in zip(lines, expected, strict=True):
        assert comment.startswith(line) or line in comment, (line, comment)
