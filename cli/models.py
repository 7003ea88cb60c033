"""`python main.py models`: every model Easel found (checkpoints, then upscalers, detectors and taggers), usable or
refused with the reason."""

from __future__ import annotations

from engine.detectors.files import DetectorLibrary
from engine.models.registry import ModelRegistry
from engine.taggers.files import TaggerLibrary
from engine.upscalers.files import UpscalerLibrary


def list_models(
    registry: ModelRegistry,
    upscalers: UpscalerLibrary | None = None,
    detectors: DetectorLibrary | None = None,
    taggers: TaggerLibrary | None = None,
) -> int:
    for entry in registry.entries():
        status = f"refused: {entry.refused}" if entry.refused else f"{entry.kind}, {entry.family_name}"
        extra = ", v-prediction" if entry.prediction == "v_prediction" else ""
        extra += ", zero terminal SNR" if entry.ztsnr else ""
        print(f"{entry.name}\t{status}{extra if not entry.refused else ''}")
    for upscaler in upscalers.entries() if upscalers is not None else []:
        status = f"refused: {upscaler.refused}" if upscaler.refused else f"upscaler, {upscaler.label}"
        print(f"{upscaler.name}\t{status}")
    for detector in detectors.entries() if detectors is not None else []:
        status = f"refused: {detector.refused}" if detector.refused else f"detector, {detector.label}"
        print(f"{detector.name}\t{status}")
    for tagger in taggers.entries() if taggers is not None else []:
        print(f"{tagger.name}\t{f'refused: {tagger.refused}' if tagger.refused else f'tagger, {tagger.label}'}")
    return 0
