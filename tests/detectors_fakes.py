"""Tiny random detectors for tests: YOLOv8 networks as `.safetensors`, ONNX exports, and ultralytics-style `.pt`
pickles (Easel's layers under ultralytics' class names, pickled as ultralytics pickles them)."""

from __future__ import annotations

import sys
import types
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from engine.detectors import yolo

TINY_WIDTHS = (8, 8, 16, 16, 16)
# What ultralytics keeps of a training run: paths, sets, numpy scalars (read as nothing by the converter).
TRAIN_ARGS = {"imgsz": 640, "save_dir": PurePosixPath("runs/detect/train"), "classes": {0}}


def tiny_yolo(classes: int = 1, *, masks: int = 0, seed: int = 0) -> yolo.YoloV8:
    """A tiny YOLOv8 whose convolutions are scaled up, so that its scores differ from anchor to anchor (PyTorch's
    initialisation through batch norm gives nearly the same score everywhere)."""
    torch.manual_seed(seed)
    network = yolo.new(TINY_WIDTHS, (1, 1), classes, masks=masks, proto=8)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.Conv2d) and module.weight.requires_grad:
                module.weight.mul_(2.0)
    return network


def write_safetensors(network: yolo.YoloV8, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    return path


def write_onnx(network: torch.nn.Module, path: Path, *, dynamic: bool = True, outputs: int = 1) -> Path:
    names = ["output0", "output1"][:outputs]
    axes = {"images": {0: "batch", 2: "height", 3: "width"}} if dynamic else None
    torch.onnx.export(
        network,
        torch.zeros(1, 3, 640, 640),
        str(path),
        dynamo=False,
        input_names=["images"],
        output_names=names,
        dynamic_axes=axes,
    )
    return path


class _Outputs(torch.nn.Module):
    """A YOLOv8 as its ONNX export has it: the tensors only (no None for detection models)."""

    def __init__(self, network: yolo.YoloV8) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> Any:
        predictions, prototypes = self.network(x)
        return predictions if prototypes is None else (predictions, prototypes)


def export_onnx(network: yolo.YoloV8, path: Path, *, dynamic: bool = True) -> Path:
    outputs = 2 if network.model[yolo.HEAD].sizes.masks else 1
    return write_onnx(_Outputs(network), path, dynamic=dynamic, outputs=outputs)


_NAMES = {
    yolo.Conv: ("ultralytics.nn.modules.conv", "Conv"),
    yolo.C2f: ("ultralytics.nn.modules.block", "C2f"),
    yolo.Bottleneck: ("ultralytics.nn.modules.block", "Bottleneck"),
    yolo.SPPF: ("ultralytics.nn.modules.block", "SPPF"),
    yolo.DFL: ("ultralytics.nn.modules.block", "DFL"),
    yolo.Proto: ("ultralytics.nn.modules.block", "Proto"),
    yolo.Detect: ("ultralytics.nn.modules.head", "Detect"),
}


def write_ultralytics_pt(network: yolo.YoloV8, path: Path) -> Path:
    """`network` pickled the way ultralytics saves a checkpoint: {'model': DetectionModel (fp16), ...}, every layer
    under its ultralytics class name. The fake ultralytics modules exist only while saving."""
    made: dict[str, types.ModuleType] = {}

    def cls(module: str, name: str, base: type) -> type:
        mod = made.setdefault(module, types.ModuleType(module))
        if not hasattr(mod, name):
            setattr(mod, name, type(name, (base,), {"__module__": module}))
        return getattr(mod, name)  # type: ignore[no-any-return]

    segmentation = bool(network.model[yolo.HEAD].sizes.masks)
    for module in network.modules():
        if type(module) in _NAMES:
            mod, name = _NAMES[type(module)]
            if type(module) is yolo.Detect:
                sizes = module.__dict__.pop("sizes")  # ultralytics keeps plain numbers on its head
                module.nc, module.reg_max, module.nm = sizes.classes, sizes.bins, sizes.masks
                module.stride = torch.tensor([8.0, 16.0, 32.0])
                name = "Segment" if segmentation else "Detect"
            module.__class__ = cls(mod, name, type(module))
        elif isinstance(module, torch.nn.Identity):
            module.__class__ = cls("ultralytics.nn.modules.conv", "Concat", torch.nn.Identity)
    task = cls("ultralytics.nn.tasks", "SegmentationModel" if segmentation else "DetectionModel", torch.nn.Module)
    model = task()
    model.model = torch.nn.Sequential(*network.model)
    model.names = {0: "face"}
    model.yaml = {"nc": 1, "scale": "n"}
    model.args = cls("ultralytics.utils", "IterableSimpleNamespace", types.SimpleNamespace)(imgsz=640, task="detect")
    model.half()
    for name in list(made):  # the parent packages, for pickle's import of each module
        parts = name.split(".")
        for i in range(1, len(parts)):
            made.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    before = dict(sys.modules)
    sys.modules.update(made)
    try:
        torch.save(
            {
                "model": model,
                "ema": None,
                "date": "2024-01-01",
                "version": "8.0.0",
                "train_args": TRAIN_ARGS,
                "train_metrics": {"metrics/mAP50(B)": np.float64(0.52)},
            },
            str(path),
        )
    finally:
        for name in made:
            if name not in before:
                del sys.modules[name]
    return path


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.target), "w"))


def write_malicious_pt(path: Path, target: Path) -> Path:
    """A `.pt` that creates `target` when unpickled (as a downloaded "detector" could run anything)."""
    torch.save({"model": _Evil(target), "version": "8.0.0"}, str(path))
    return path
