"""Running a detector as ADetailer's `ultralytics_predict` does: ultralytics' letterbox, the network (Easel's YOLOv8
or an ONNX export through onnxruntime), its non-maximum suppression, boxes scaled back to the image, segmentation
masks from the prototypes, then ADetailer's masks (filled boxes, or the masks resized to the image).

Runs on the executor's worker thread; the networks are cached per device like upscalers.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from engine.detectors import yolo
from engine.detectors.files import DetectorFile, DetectorLibrary
from engine.detectors.masks import Detections, box_masks
from engine.errors import InvalidParamsError

log = logging.getLogger(__name__)

IMAGE_SIZE = 640  # ultralytics' predict default (`imgsz`), which ADetailer keeps
IOU = 0.7  # ultralytics' predict default
MAX_DETECTIONS = 300
_MAX_NMS = 30000
_MAX_WH = 7680  # class offset that keeps NMS per class
_PAD = 114


@dataclass(frozen=True)
class Raw:
    """A network's outputs for one image: predictions (4 + classes [+ mask coefficients], anchors) and prototypes."""

    predictions: np.ndarray
    prototypes: np.ndarray | None = None


Network = Callable[[np.ndarray], Raw]


def letterbox(image: np.ndarray, shape: tuple[int, int], *, auto: bool, stride: int = 32) -> np.ndarray:
    """ultralytics' `LetterBox`: scaled to fit `shape` (height, width), centred, padded with grey 114; with `auto`
    (a network that takes any size) padded only up to a multiple of the stride."""
    height, width = image.shape[:2]
    ratio = min(shape[0] / height, shape[1] / width)
    new_w, new_h = round(width * ratio), round(height * ratio)
    dw, dh = shape[1] - new_w, shape[0] - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    if (width, height) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh / 2 - 0.1), round(dh / 2 + 0.1)
    left, right = round(dw / 2 - 0.1), round(dw / 2 + 0.1)
    padded: np.ndarray = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(_PAD,) * 3)
    return padded


def _xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    out = np.empty_like(boxes)
    half_w, half_h = boxes[:, 2] / 2, boxes[:, 3] / 2
    out[:, 0], out[:, 1] = boxes[:, 0] - half_w, boxes[:, 1] - half_h
    out[:, 2], out[:, 3] = boxes[:, 0] + half_w, boxes[:, 1] + half_h
    return out


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS (torchvision's): highest score first, dropping boxes that overlap a kept one by more than
    `threshold` IoU."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[~(iou > threshold)]
    return keep


@dataclass(frozen=True)
class Kept:
    """NMS's survivors, in its order (most confident first), in the network's input coordinates."""

    boxes: np.ndarray  # (n, 4) xyxy
    confidences: np.ndarray  # (n,)
    coefficients: np.ndarray  # (n, masks)


def non_max_suppression(raw: Raw, confidence: float, iou: float = IOU) -> Kept:
    """ultralytics' `non_max_suppression` for one image (one label per box, per-class NMS, at most 300)."""
    masks = 0 if raw.prototypes is None else raw.prototypes.shape[0]
    rows = raw.predictions.T.astype(np.float32)
    classes = rows.shape[1] - 4 - masks
    scores = rows[:, 4 : 4 + classes]
    best = scores.max(1) if classes else np.zeros(len(rows), np.float32)
    candidates = rows[best > confidence]
    if not len(candidates):
        return Kept(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, masks), np.float32))
    boxes = _xywh_to_xyxy(candidates[:, :4])
    conf = candidates[:, 4 : 4 + classes].max(1)
    label = candidates[:, 4 : 4 + classes].argmax(1)
    if len(candidates) > _MAX_NMS:
        top = np.argsort(-conf, kind="stable")[:_MAX_NMS]
        boxes, conf, label, candidates = boxes[top], conf[top], label[top], candidates[top]
    keep = _nms(boxes + label[:, None] * _MAX_WH, conf, iou)[:MAX_DETECTIONS]
    return Kept(boxes[keep], conf[keep], candidates[keep, 4 + classes :])


def scale_boxes(boxes: np.ndarray, network_shape: tuple[int, int], image_shape: tuple[int, int]) -> np.ndarray:
    """ultralytics' `scale_boxes`: from the letterboxed input back to the image (height, width), clipped to it."""
    gain = min(network_shape[0] / image_shape[0], network_shape[1] / image_shape[1])
    pad_x = round((network_shape[1] - image_shape[1] * gain) / 2 - 0.1)
    pad_y = round((network_shape[0] - image_shape[0] * gain) / 2 - 0.1)
    out = boxes.copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - pad_x) / gain
    out[:, [1, 3]] = (out[:, [1, 3]] - pad_y) / gain
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, image_shape[1])
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, image_shape[0])
    return out


def process_masks(
    prototypes: np.ndarray, coefficients: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """ultralytics' `process_mask` (upsampled): each box's mask from the prototypes, cut to its box, upsampled to
    the network's input size, thresholded at 0.5. (n, H, W) of 0/1."""
    channels, mask_h, mask_w = prototypes.shape
    masks = torch.from_numpy(coefficients @ prototypes.reshape(channels, -1)).sigmoid().view(-1, mask_h, mask_w)
    scaled = torch.from_numpy(boxes).clone()
    scaled[:, [0, 2]] *= mask_w / shape[1]
    scaled[:, [1, 3]] *= mask_h / shape[0]
    x1, y1, x2, y2 = torch.chunk(scaled[:, :, None], 4, 1)
    cols = torch.arange(mask_w, dtype=x1.dtype)[None, None, :]
    rows = torch.arange(mask_h, dtype=x1.dtype)[None, :, None]
    masks = masks * ((cols >= x1) * (cols < x2) * (rows >= y1) * (rows < y2))
    masks = F.interpolate(masks[None], shape, mode="bilinear", align_corners=False)[0]
    return masks.gt(0.5).numpy()


def detect(network: Network, image: Image.Image, confidence: float, *, square: bool = False) -> Detections:
    """ADetailer's `ultralytics_predict` on one image: boxes in image pixels, confidences, and masks (filled boxes,
    or a segmentation model's masks resized to the image with PIL's default filter, as `mask_to_pil`).
    `square`: the network takes only IMAGE_SIZE x IMAGE_SIZE (a fixed-size export), so the letterbox is full."""
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    boxed = letterbox(rgb, (IMAGE_SIZE, IMAGE_SIZE), auto=not square)
    tensor = np.ascontiguousarray(boxed.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    raw = network(tensor)
    kept = non_max_suppression(raw, confidence)
    if not len(kept.boxes):
        return Detections((width, height))
    net_shape = boxed.shape[:2]
    boxes = scale_boxes(kept.boxes, net_shape, (height, width))
    box_list = tuple(tuple(float(v) for v in box) for box in boxes)
    if raw.prototypes is None:
        masks = box_masks(box_list, (width, height))
    else:
        planes = process_masks(raw.prototypes, kept.coefficients, kept.boxes, net_shape)
        masks = tuple(
            np.asarray(Image.fromarray((plane * 255).astype(np.uint8), "L").resize((width, height))) for plane in planes
        )
    confidences = tuple(float(c) for c in kept.confidences)
    return Detections((width, height), box_list, confidences, masks)  # type: ignore[arg-type]


class TorchNetwork:
    """Easel's YOLOv8 with safetensors weights."""

    square = False

    def __init__(self, path: Path, device: str) -> None:
        self.device = device
        try:
            self.model = yolo.load(load_file(str(path))).to(device)
        except yolo.NotYoloError as err:
            raise InvalidParamsError(f"Detector {path.stem!r} cannot be used: {err}.") from None

    def __call__(self, tensor: np.ndarray) -> Raw:
        with torch.inference_mode():
            predictions, prototypes = self.model(torch.from_numpy(tensor).to(self.device))
        return Raw(
            predictions[0].float().cpu().numpy(), None if prototypes is None else prototypes[0].float().cpu().numpy()
        )


class OnnxNetwork:
    """An ONNX export, run by onnxruntime: CUDA where its GPU build is installed, else the CPU."""

    def __init__(self, path: Path, device: str) -> None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
        providers = (
            ["CUDAExecutionProvider"] if device.startswith("cuda") and "CUDAExecutionProvider" in available else []
        )
        self.session = onnxruntime.InferenceSession(str(path), providers=[*providers, "CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        self.square = all(isinstance(side, int) for side in shape[2:])
        if self.square and tuple(shape[2:]) != (IMAGE_SIZE, IMAGE_SIZE):
            raise InvalidParamsError(
                f"Detector {path.stem!r} takes {shape[3]}x{shape[2]} images; Easel runs detectors at "
                f"{IMAGE_SIZE}x{IMAGE_SIZE}, as ADetailer does (export it with imgsz=640 or dynamic=True)."
            )

    def __call__(self, tensor: np.ndarray) -> Raw:
        name = self.session.get_inputs()[0].name
        outputs: list[Any] = self.session.run(None, {name: tensor})
        return Raw(np.asarray(outputs[0][0]), np.asarray(outputs[1][0]) if len(outputs) > 1 else None)


class DetectorModels:
    """Loaded detectors, a few per device, reloaded when their file changes."""

    def __init__(self, library: DetectorLibrary, device: str, keep: int = 4) -> None:
        self.library = library
        self.device = device
        self.keep = keep
        self._loaded: OrderedDict[tuple[Path, float], TorchNetwork | OnnxNetwork] = OrderedDict()

    def network(self, name: str) -> TorchNetwork | OnnxNetwork:
        found: DetectorFile = self.library.resolve(name)
        key = (found.path, found.path.stat().st_mtime)
        if key not in self._loaded:
            log.info("loading detector %s (%s)", found.name, found.label)
            self._loaded[key] = (
                OnnxNetwork(found.path, self.device) if found.kind == "onnx" else TorchNetwork(found.path, self.device)
            )
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(key)
        return self._loaded[key]

    def detect(self, name: str, image: Image.Image, confidence: float) -> Detections:
        network = self.network(name)
        return detect(network, image, confidence, square=network.square)
