"""The tagger folder (`models/tagger/<name>/` with `model.onnx` and `selected_tags.csv`), listed like the other
models: each tagger with its input size and tag count, or why it is refused. onnxruntime parses the model (no code
runs); the tag list is read with a size cap."""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidParamsError
from engine.taggers.tags import CHARACTER_THRESHOLD, GENERAL_THRESHOLD, TUNED_THRESHOLDS, Labels, read_labels

MODEL_FILE = "model.onnx"
TAGS_FILE = "selected_tags.csv"
SETTINGS_FILE = "thresholds.json"  # optional: {"general": 0.3, "character": 0.8}
MAX_MODEL_BYTES = 2 * 1024**3  # wd-eva02-large-tagger-v3 is 1.2 GB
MAX_TAGS_BYTES = 16 * 1024 * 1024  # the v3 lists are about 300 kB


@dataclass(frozen=True)
class TaggerFile:
    name: str  # the folder's name: what requests name (`wd-vit-tagger-v3`)
    path: Path  # the folder
    label: str  # `WD14 tagger, 448 px, 10,861 tags`
    refused: str | None = None
    side: int = 0
    general: float = GENERAL_THRESHOLD
    character: float = CHARACTER_THRESHOLD


def load_labels(folder: Path) -> Labels:
    path = folder / TAGS_FILE
    if path.stat().st_size > MAX_TAGS_BYTES:
        raise ValueError(f"{TAGS_FILE} is over {MAX_TAGS_BYTES // 2**20} MiB")
    text = path.read_text(encoding="utf-8")
    return read_labels(list(csv.DictReader(io.StringIO(text))))


def _thresholds(folder: Path) -> tuple[float, float]:
    general = TUNED_THRESHOLDS.get(folder.name, GENERAL_THRESHOLD)
    character = CHARACTER_THRESHOLD
    settings = folder / SETTINGS_FILE
    if settings.is_file() and settings.stat().st_size < 4096:
        data = json.loads(settings.read_text(encoding="utf-8"))
        general = float(data.get("general", general))
        character = float(data.get("character", character))
        if not (0 < general < 1 and 0 < character < 1):
            raise ValueError(f"{SETTINGS_FILE}: thresholds must be between 0 and 1")
    return general, character


def check_tagger(folder: Path) -> TaggerFile:
    """The tagger in `folder`, checked: a model onnxruntime can run taking (N, S, S, 3) and giving one output per
    row of the tag list."""
    model = folder / MODEL_FILE
    try:
        if not (folder / TAGS_FILE).is_file():
            raise ValueError(f"no {TAGS_FILE} next to {MODEL_FILE}")
        if model.stat().st_size > MAX_MODEL_BYTES:
            raise ValueError(f"{MODEL_FILE} is {model.stat().st_size:,} bytes, too large for a tagger")
        labels = load_labels(folder)
        general, character = _thresholds(folder)
        import onnxruntime

        try:
            session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for an unreadable model
            raise ValueError(f"not an ONNX model onnxruntime can run ({str(err).splitlines()[0][:120]})") from None
        shape = session.get_inputs()[0].shape
        outputs = session.get_outputs()[0].shape
        if len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int) or shape[1] != shape[2]:
            raise ValueError("not a WD14 tagger (its input must be N x S x S x 3)")
        if len(outputs) != 2 or (isinstance(outputs[1], int) and outputs[1] != len(labels.names)):
            raise ValueError(f"the model has {outputs[1]} outputs for the {len(labels.names)} tags of {TAGS_FILE}")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return TaggerFile(folder.name, folder, "refused", str(err))
    label = f"WD14 tagger, {shape[1]} px, {len(labels.names):,} tags"
    return TaggerFile(folder.name, folder, label, side=int(shape[1]), general=general, character=character)


class TaggerLibrary:
    """The tagger folders: each subfolder holding a `model.onnx` is a tagger, named by the subfolder."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders
        self._taggers: dict[str, TaggerFile] = {}
        self.refresh()

    def refresh(self) -> None:
        found: dict[str, TaggerFile] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for model in sorted(folder.glob(f"*/{MODEL_FILE}")):
                if model.parent.name.lower() not in found:
                    found[model.parent.name.lower()] = check_tagger(model.parent)
        self._taggers = found

    def entries(self) -> list[TaggerFile]:
        return sorted(self._taggers.values(), key=lambda t: t.name.lower())

    def names(self) -> list[str]:
        return [t.name for t in self.entries() if t.refused is None]

    def resolve(self, name: str | None) -> TaggerFile:
        """The tagger for a name (case forgiven), or the first installed when none is named; InvalidParamsError
        saying why not."""
        if name is None or not name.strip():
            usable = [t for t in self.entries() if t.refused is None]
            if not usable:
                raise InvalidParamsError(
                    "No tagger is installed here: the owner can add SmilingWolf's `wd-vit-tagger-v3` (its "
                    "`model.onnx` and `selected_tags.csv`) to `models/tagger/wd-vit-tagger-v3/`."
                )
            return usable[0]
        found = self._taggers.get(name.strip().lower())
        if found is not None and found.refused is not None:
            raise InvalidParamsError(f"Tagger {found.name!r} is refused: {found.refused}.")
        if found is not None:
            return found
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.4)
        hint = f" Closest: {', '.join(close)}." if close else " Installed: " + (", ".join(self.names()) or "none") + "."
        raise InvalidParamsError(f"Unknown tagger {name[:60]!r}.{hint}")
