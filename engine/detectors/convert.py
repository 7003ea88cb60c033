"""`python main.py convert-detector FILE.pt`: an ultralytics detector pickle to `.safetensors`, once, by the owner.

The pickle is first scanned without running it (`torch.serialization.get_unsafe_globals_in_checkpoint`); any global
outside the allowlist (the YOLOv8 detector's own classes, the torch layers it holds, numpy scalars in its training
metrics) refuses the file by name. Then torch's `weights_only` unpickler loads it with each ultralytics class replaced
by an empty stand-in that only receives its attributes: no ultralytics code exists here, and none runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from engine.detectors import yolo
from engine.detectors.files import describe_shapes

MAX_PICKLE_BYTES = 512 * 1024 * 1024

# ultralytics' classes a YOLOv8 detection or segmentation checkpoint holds, by name (their modules moved between
# versions: `ultralytics.nn.modules` was one file before 8.0.100, a package after).
_ULTRALYTICS_CLASSES = {
    "DetectionModel", "SegmentationModel", "Conv", "Concat", "C2f", "Bottleneck", "SPPF", "DFL", "Detect", "Segment",
    "Proto", "IterableSimpleNamespace",
}  # fmt: skip
_ULTRALYTICS_MODULES = (
    "ultralytics.nn.tasks", "ultralytics.nn.modules", "ultralytics.nn.modules.conv", "ultralytics.nn.modules.block",
    "ultralytics.nn.modules.head", "ultralytics.utils", "ultralytics.yolo.utils",
)  # fmt: skip
_TORCH_LAYERS = {
    "torch.nn.modules.conv.Conv2d": torch.nn.Conv2d,
    "torch.nn.modules.conv.ConvTranspose2d": torch.nn.ConvTranspose2d,
    "torch.nn.modules.batchnorm.BatchNorm2d": torch.nn.BatchNorm2d,
    "torch.nn.modules.activation.SiLU": torch.nn.SiLU,
    "torch.nn.modules.pooling.MaxPool2d": torch.nn.MaxPool2d,
    "torch.nn.modules.upsampling.Upsample": torch.nn.Upsample,
    "torch.nn.modules.container.Sequential": torch.nn.Sequential,
    "torch.nn.modules.container.ModuleList": torch.nn.ModuleList,
    "torch.nn.modules.linear.Identity": torch.nn.Identity,
}
# Training records (metrics as numpy scalars, paths, dates): read as nothing.
_IGNORED = {"numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype", "numpy.dtypes.Float64DType",
            "numpy.dtypes.Float32DType", "datetime.datetime", "pathlib.PosixPath", "pathlib.WindowsPath",
            "pathlib.PurePosixPath", "pathlib.PureWindowsPath"}  # fmt: skip
_CONTAINERS = {"builtins.set": set, "builtins.frozenset": frozenset}


class ConvertError(ValueError):
    """Why a file was not converted (safe to print)."""


class _Stub:
    """Stands in for an ultralytics class: receives the pickled attributes and does nothing else."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)


class _Ignored:
    """Stands in for a training record (a numpy scalar, a path): takes its arguments and state, keeps nothing."""

    def __init__(self, *_args: Any) -> None:
        pass

    def __setstate__(self, _state: Any) -> None:
        pass


def _allowed(name: str) -> bool:
    module, _, cls = name.rpartition(".")
    known = name in _TORCH_LAYERS or name in _IGNORED or name in _CONTAINERS
    return known or (module in _ULTRALYTICS_MODULES and cls in _ULTRALYTICS_CLASSES)


def _safe_globals(names: list[str]) -> list[Any]:
    found: list[Any] = []
    for name in names:
        if name in _TORCH_LAYERS:
            found.append(_TORCH_LAYERS[name])
        elif name in _CONTAINERS:
            found.append(_CONTAINERS[name])
        elif name in _IGNORED:
            found.append((type(name.rpartition(".")[2], (_Ignored,), {"__module__": "easel.ignored"}), name))
        else:
            found.append((type(name.rpartition(".")[2], (_Stub,), {"__module__": "easel.stub"}), name))
    return found


def _tensors(module: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """A module tree's parameters and buffers as `state_dict` names them, read from the attributes alone."""
    attrs = getattr(module, "__dict__", {})
    for group in ("_parameters", "_buffers"):
        for name, tensor in (attrs.get(group) or {}).items():
            if isinstance(tensor, torch.Tensor):
                yield prefix + name, tensor
    for name, child in (attrs.get("_modules") or {}).items():
        if child is not None:
            yield from _tensors(child, f"{prefix}{name}.")


def load_pickle(path: Path) -> dict[str, Any]:
    """The checkpoint with ultralytics' classes as stand-ins; ConvertError for anything outside the allowlist."""
    if path.stat().st_size > MAX_PICKLE_BYTES:
        raise ConvertError(f"{path.name} is {path.stat().st_size:,} bytes, too large for a detector")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as err:  # a damaged zip or pickle: torch raises many kinds
        raise ConvertError(f"{path.name} is not a torch checkpoint ({str(err).splitlines()[0][:120]})") from None
    refused = sorted(name for name in names if not _allowed(name))
    if refused:
        raise ConvertError(
            f"{path.name} asks to run code that is not part of a YOLOv8 detector: {', '.join(refused[:5])}; "
            "it was not loaded"
        )
    try:
        with torch.serialization.safe_globals(_safe_globals(names)):
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch's weights_only unpickler refuses with its own errors
        raise ConvertError(f"{path.name} could not be read safely ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(checkpoint, dict):
        raise ConvertError(f"{path.name} is not an ultralytics checkpoint (no model in it)")
    return checkpoint


def convert(path: Path, out: Path | None = None) -> Path:
    """Write the detector in `path` (an ultralytics YOLOv8 `.pt`) as `.safetensors` next to it (or to `out`), with
    its class names in the metadata; the network is rebuilt from the weights to check them. The written path."""
    checkpoint = load_pickle(path)
    model = checkpoint.get("ema") or checkpoint.get("model")
    if model is None:
        raise ConvertError(f"{path.name} is not an ultralytics checkpoint (no model in it)")
    state = {name: tensor.detach().clone().contiguous() for name, tensor in _tensors(model)}
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items()}
    try:
        label, _ = describe_shapes(shapes)
        yolo.build(shapes)
    except (ValueError, KeyError) as err:
        raise ConvertError(f"{path.name}: {err}") from None
    names = getattr(model, "names", None)
    metadata = {"easel_detector": "yolov8", "description": label}
    if isinstance(names, dict):
        metadata["names"] = json.dumps({str(k): str(v) for k, v in names.items()})
    target = out or path.with_suffix(".safetensors")
    save_file(state, str(target), metadata=metadata)
    return target
