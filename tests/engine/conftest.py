"""Engine fixtures: one registry and engine per session on builtin:tiny (built once into a temp data dir)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine.models.registry import ModelRegistry
from engine.params import GenerationParams
from engine.pipeline import DiffusersEngine


@pytest.fixture(scope="session")
def engine_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("easel")
    (root / "models").mkdir()
    return root / "models", root / "cache"


@pytest.fixture(scope="session")
def registry(engine_dirs: tuple[Path, Path]) -> ModelRegistry:
    return ModelRegistry(*engine_dirs)


@pytest.fixture(scope="session")
def engine(registry: ModelRegistry) -> Iterator[DiffusersEngine]:
    yield DiffusersEngine(registry, "cpu")


def tiny_params(**changes: object) -> GenerationParams:
    base = GenerationParams(
        prompt="a lighthouse at dusk",
        model="builtin:tiny",
        seed=42,
        steps=4,
        sampler="Euler",
        width=64,
        height=64,
    )
    return base.replace(**changes)
