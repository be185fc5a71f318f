"""Shared fixtures: tiny GGUF files written by the tests, and the two real models from PyPI."""

from __future__ import annotations

from pathlib import Path

import pytest

from phfe.inference.sources import KNOWN_SOURCES, resolve_source
from tests.gguf_factory import write_all_types_gguf


@pytest.fixture(scope="session")
def all_types_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_all_types_gguf(tmp_path_factory.mktemp("gguf") / "all_types.gguf")


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return resolve_source(KNOWN_SOURCES["smollm2-135m"])


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    return resolve_source(KNOWN_SOURCES["gemma3-270m"])


@pytest.fixture(scope="session", params=["smollm2-135m", "gemma3-270m"])
def real_model_path(request: pytest.FixtureRequest) -> Path:
    return resolve_source(KNOWN_SOURCES[request.param])
