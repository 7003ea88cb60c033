"""Marks the tests that run real diffusion (or start Easel as a process) `slow`, so the fast loop is
`./test.sh -m "not slow"`; `./test.sh` runs everything."""

from __future__ import annotations

import pytest

# Fixtures that load a real model: a test that asks for one runs diffusion.
REAL_MODEL_FIXTURES = frozenset({"engine", "shapes", "lora_engine", "tiny", "cond", "real_harness", "tiny_xl"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
