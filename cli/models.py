"""`python main.py models`: every model Easel found, usable or refused with the reason."""

from __future__ import annotations

from engine.models.registry import ModelRegistry


def list_models(registry: ModelRegistry) -> int:
    for entry in registry.entries():
        status = f"refused: {entry.refused}" if entry.refused else f"{entry.kind}, {entry.family_name}"
        extra = ", v-prediction" if entry.prediction == "v_prediction" else ""
        extra += ", zero terminal SNR" if entry.ztsnr else ""
        print(f"{entry.name}\t{status}{extra if not entry.refused else ''}")
    return 0
