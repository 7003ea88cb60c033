"""The detector folders (A1111's `models/adetailer`), listed like checkpoints and upscalers: each file with what it
is or why it is refused. Nothing here unpickles: an ultralytics `.pt` is listed with the command that converts it.

Accepted: YOLOv8 detection and segmentation weights in `.safetensors` (checked from the header's shapes, without
torch), and ONNX exports (checked by onnxruntime, which parses without running code).
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path

from engine.detailer import detector_stem
from engine.errors import InvalidParamsError
from engine.models.single_file import read_header

log = logging.getLogger(__name__)

SUFFIXES = (".safetensors", ".onnx")
PICKLES = (".pt", ".pth", ".ckpt")
MAX_ONNX_BYTES = 512 * 1024 * 1024  # YOLOv8x is 260 MB in fp32; a file far above it is not a detector
HEAD = "model.22"


def convert_hint(path: Path | str) -> str:
    name = Path(path).name
    return f"`python main.py convert-detector {name}` turns it into `{Path(name).stem}.safetensors`"


@dataclass(frozen=True)
class DetectorFile:
    name: str  # the file's stem: what requests name (`face_yolov8n`), written back as ADetailer's `face_yolov8n.pt`
    path: Path
    kind: str  # "yolov8" (safetensors weights), "onnx", or "" when refused
    label: str  # what lists show: `YOLOv8 detection, 1 class`, `ONNX detector`
    refused: str | None = None
    segmentation: bool = False


def describe_shapes(shapes: dict[str, tuple[int, ...]]) -> tuple[str, bool]:
    """A torch-free look at YOLOv8 weights: the label and whether it segments; ValueError saying what it is not.
    The full layout is checked when the network is built (`engine.detectors.yolo.build`)."""
    for key in (f"{HEAD}.dfl.conv.weight", f"{HEAD}.cv3.0.2.weight", "model.2.cv1.conv.weight", "model.0.conv.weight"):
        if key not in shapes:
            raise ValueError(f"not a YOLOv8 detector (no `{key}`)")
    if "model.2.m.0.m.0.cv1.conv.weight" in shapes or "model.2.m.0.cv1.conv.weight" not in shapes:
        raise ValueError("not a YOLOv8 detector (YOLO11, YOLOv5 and other versions are not supported yet)")
    classes = shapes[f"{HEAD}.cv3.0.2.weight"][0]
    segmentation = f"{HEAD}.proto.cv3.conv.weight" in shapes
    kind = "segmentation" if segmentation else "detection"
    return f"YOLOv8 {kind}, {classes} class{'es' if classes != 1 else ''}", segmentation


def check_onnx(path: Path) -> tuple[str, bool]:
    """An ONNX file's interface checked as a YOLO export's: one image input (N, 3, H, W) and a predictions output
    (plus prototypes for segmentation). ValueError saying what is wrong."""
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise ValueError(f"{path.stat().st_size:,} bytes is too large for a detector")
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for any unreadable model
        raise ValueError(f"not an ONNX model onnxruntime can run ({str(err).splitlines()[0][:120]})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
        raise ValueError("not a YOLO detector export (it must take one image, shaped N x 3 x H x W)")
    if len(outputs) not in (1, 2) or len(outputs[0].shape) != 3:
        raise ValueError("not a YOLO detector export (its first output must be predictions, N x (4 + classes) x boxes)")
    rows, columns = outputs[0].shape[1:]
    if isinstance(rows, int) and isinstance(columns, int) and rows > columns:
        raise ValueError("an export with NMS built in (`nms=True`) or another layout: export it again without NMS")
    segmentation = len(outputs) == 2
    return f"ONNX {'segmentation' if segmentation else 'detection'}", segmentation


class DetectorLibrary:
    """The detector folders, scanned by file stem (a `.safetensors` or `.onnx` wins over a `.pt` of the same name)."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders
        self._files: dict[str, DetectorFile] = {}
        self.refresh()

    def refresh(self) -> None:
        files: dict[str, DetectorFile] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES + PICKLES)
            paths.sort(key=lambda p: p.suffix.lower() in PICKLES)  # usable formats first
            for path in paths:
                if path.stem.lower() not in files:
                    files[path.stem.lower()] = self._read(path)
        self._files = files

    @staticmethod
    def _read(path: Path) -> DetectorFile:
        suffix = path.suffix.lower()
        if suffix in PICKLES:
            reason = f"an ultralytics pickle, which can run code when loaded: {convert_hint(path)}"
            return DetectorFile(path.stem, path, "", "refused", reason)
        try:
            if suffix == ".onnx":
                label, segmentation = check_onnx(path)
                return DetectorFile(path.stem, path, "onnx", label, segmentation=segmentation)
            header = read_header(path)
            shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
            label, segmentation = describe_shapes(shapes)
        except (OSError, ValueError) as err:
            return DetectorFile(path.stem, path, "", "refused", str(err))
        return DetectorFile(path.stem, path, "yolov8", label, segmentation=segmentation)

    def entries(self) -> list[DetectorFile]:
        return sorted(self._files.values(), key=lambda f: f.name.lower())

    def names(self) -> list[str]:
        return [f.name for f in self.entries() if f.refused is None]

    def find(self, name: str) -> DetectorFile | None:
        """The file for a name: its stem, case forgiven, with or without an extension (`face_yolov8n.pt` finds
        `face_yolov8n.safetensors`)."""
        return self._files.get(detector_stem(name).lower())

    def resolve(self, name: str) -> DetectorFile:
        """The usable detector for a name; InvalidParamsError saying why not (refused, or the closest names)."""
        found = self.find(name)
        if found is not None and found.refused is not None:
            raise InvalidParamsError(f"Detector {found.name!r} is refused: {found.refused}.")
        if found is not None:
            return found
        close = difflib.get_close_matches(detector_stem(name), self.names(), n=3, cutoff=0.4)
        hint = f" Closest: {', '.join(close)}." if close else "" if self._files else " No detectors are installed."
        raise InvalidParamsError(f"Unknown detector {name[:60]!r}.{hint}")


def install_hint(name: str) -> str:
    """What a pasted `ADetailer model` needs: `face_yolov8n.safetensors` in the detector folder, converted from the
    `.pt` that ADetailer downloads."""
    stem = detector_stem(name)
    return (
        f"the owner can add `{stem}.safetensors` (converted from ADetailer's `{stem}.pt` with "
        f"`python main.py convert-detector {stem}.pt`) or `{stem}.onnx` to the detector folder"
    )
