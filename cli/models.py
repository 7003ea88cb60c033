"""`python main.py models`: every model Easel found, usable or refused with the reason."""

from __future__ import annotations

from engine.models.registry import ModelRegistry


def list_models(registry: ModelRegistry) -> int:
    for entry in registry.entries():
        status = f"refused: {entry.refused}" if entry.refused else entry.kind
        print(f"{entry.name}\t{status}")
    return 0
