"""Marks the tests that run real diffusion (or start Easel as a process) `slow`, so the fast loop is
`./test.sh -m "not slow"`; `./test.sh` runs everything."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import engine.request
from engine.params import GenerationParams

# Fixtures that load a real model: a test that asks for one runs diffusion.
REAL_MODEL_FIXTURES = frozenset({"engine", "shapes", "lora_engine", "tiny", "cond", "real_harness", "tiny_xl"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every `build_params` the request resolver makes (one request must make one)."""
    calls: list[object] = []
    real = engine.request.build_params

    def counting(*args: Any, **kwargs: Any) -> GenerationParams:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.request, "build_params", counting)
    yield calls
