"""`python main.py convert-detector FILE.pt`: an ultralytics detector the owner trusts, written as `.safetensors`
(see `engine.detectors.convert`: nothing outside the detector's own classes is unpickled, and no code runs)."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.detectors.convert import ConvertError, convert


def convert_detector(file: str, out: str | None, folder: Path) -> int:
    """0 when written (and said where), 2 when refused (and said why). A bare name is looked for in `folder` too."""
    path = Path(file)
    if not path.exists() and (folder / file).exists():
        path = folder / file
    try:
        written = convert(path, Path(out) if out else None)
    except (ConvertError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {written}; put it in {folder} (the detector folder) and refresh the models", file=sys.stderr)
    return 0
