"""YOLOv8 detection and segmentation networks (ultralytics' `yolov8.yaml` / `yolov8-seg.yaml`), built by Easel from
the sizes in a state dict: n, s, m, l, x and any width or depth between, any number of classes.

Written here rather than imported from ultralytics: ultralytics (AGPL, heavy) needs torchvision, which does not import
next to the CPU torch, and its own loader unpickles whole model objects. The layer names match ultralytics', so its
state dicts (converted to `.safetensors` by `python main.py convert-detector`) load as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

_BN_EPS = 1e-3  # ultralytics' initialize_weights sets every BatchNorm2d's eps to 0.001
HEAD = 22  # the Detect / Segment layer of the YOLOv8 graph
STRIDES = (8, 16, 32)
# The YOLOv8 graph: what each of layers 0-21 is (the widths and depths come from the weights).
_LAYOUT = (
    "conv",
    "conv",
    "c2f",
    "conv",
    "c2f",
    "conv",
    "c2f",
    "conv",
    "c2f",
    "sppf",
    "up",
    "cat",
    "c2f",
    "up",
    "cat",
    "c2f",
    "conv",
    "cat",
    "c2f",
    "conv",
    "cat",
    "c2f",
)
_CONCATS = {11: 6, 14: 4, 17: 12, 20: 9}  # layer -> the earlier layer it concatenates after the previous one's output
_SHORTCUT_C2F = {2, 4, 6, 8}  # the backbone's C2f blocks add their residuals; the head's do not


class Conv(nn.Module):
    """Convolution, batch norm, SiLU (ultralytics' `Conv`)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=_BN_EPS, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.bn(self.conv(x)))
        return out


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1 = Conv(c, c, 3)
        self.cv2 = Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    def __init__(self, c1: int, c2: int, n: int, shortcut: bool, hidden: int) -> None:
        super().__init__()
        self.c = hidden
        self.cv1 = Conv(c1, 2 * hidden, 1)
        self.cv2 = Conv((2 + n) * hidden, c2, 1)
        self.m = nn.ModuleList(Bottleneck(hidden, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        out: torch.Tensor = self.cv2(torch.cat(y, 1))
        return out


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, hidden: int) -> None:
        super().__init__()
        self.cv1 = Conv(c1, hidden, 1)
        self.cv2 = Conv(hidden * 4, c2, 1)
        self.m = nn.MaxPool2d(kernel_size=5, stride=1, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        out: torch.Tensor = self.cv2(torch.cat(y, 1))
        return out


class DFL(nn.Module):
    """Distribution focal loss integral: the expected value of each side's 16-bin distribution."""

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(bins, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(bins, dtype=torch.float).view(1, bins, 1, 1)
        self.bins = bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        out: torch.Tensor = self.conv(x.view(b, 4, self.bins, a).transpose(2, 1).softmax(1))
        return out.view(b, 4, a)


def _branch(c1: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(Conv(c1, hidden, 3), Conv(hidden, hidden, 3), nn.Conv2d(hidden, out, 1))


class Proto(nn.Module):
    """The segmentation head's mask prototypes, at a quarter of the input size."""

    def __init__(self, c1: int, hidden: int, masks: int) -> None:
        super().__init__()
        self.cv1 = Conv(c1, hidden, 3)
        self.upsample = nn.ConvTranspose2d(hidden, hidden, 2, 2, 0, bias=True)
        self.cv2 = Conv(hidden, hidden, 3)
        self.cv3 = Conv(hidden, masks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.cv3(self.cv2(self.upsample(self.cv1(x))))
        return out


@dataclass(frozen=True)
class HeadSizes:
    classes: int
    bins: int  # reg_max
    box_hidden: int
    class_hidden: int
    masks: int = 0  # segmentation: mask coefficients per box (0: a detection model)
    mask_hidden: int = 0
    proto_hidden: int = 0


class Detect(nn.Module):
    """ultralytics' `Detect` (and `Segment` with `sizes.masks`): per level a box branch and a class branch; at
    inference the boxes decoded (DFL, anchors, strides) to centre-size form in input pixels, classes sigmoid'd."""

    def __init__(self, channels: tuple[int, ...], sizes: HeadSizes) -> None:
        super().__init__()
        self.sizes = sizes
        self.cv2 = nn.ModuleList(_branch(c, sizes.box_hidden, 4 * sizes.bins) for c in channels)
        self.cv3 = nn.ModuleList(_branch(c, sizes.class_hidden, sizes.classes) for c in channels)
        self.dfl = DFL(sizes.bins)
        if sizes.masks:
            self.cv4 = nn.ModuleList(_branch(c, sizes.mask_hidden, sizes.masks) for c in channels)
            self.proto = Proto(channels[0], sizes.proto_hidden, sizes.masks)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = features[0].shape[0]
        outputs = [torch.cat((self.cv2[i](x), self.cv3[i](x)), 1) for i, x in enumerate(features)]
        anchors, strides = _anchors(features)
        flat = torch.cat([o.view(batch, o.shape[1], -1) for o in outputs], 2)
        box, cls = torch.split(flat, [4 * self.sizes.bins, self.sizes.classes], 1)
        lt, rb = self.dfl(box).chunk(2, 1)
        x1y1, x2y2 = anchors - lt, anchors + rb
        boxes = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        predictions = torch.cat((boxes, cls.sigmoid()), 1)
        if not self.sizes.masks:
            return predictions, None
        coefficients = torch.cat([self.cv4[i](x).view(batch, self.sizes.masks, -1) for i, x in enumerate(features)], 2)
        return torch.cat((predictions, coefficients), 1), self.proto(features[0])


def _anchors(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """ultralytics' `make_anchors` (offset 0.5): each cell's centre, in cells, and its level's stride."""
    points, strides = [], []
    for x, stride in zip(features, STRIDES, strict=True):
        height, width = x.shape[2:]
        sx = torch.arange(width, dtype=x.dtype, device=x.device) + 0.5
        sy = torch.arange(height, dtype=x.dtype, device=x.device) + 0.5
        gy, gx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((gx, gy), -1).view(-1, 2))
        strides.append(torch.full((height * width, 1), stride, dtype=x.dtype, device=x.device))
    return torch.cat(points).transpose(0, 1), torch.cat(strides).transpose(0, 1)


class YoloV8(nn.Module):
    """The whole network; `forward` gives ultralytics' exported outputs: predictions (batch, 4 + classes [+ mask
    coefficients], anchors) and, for a segmentation model, the prototypes (batch, masks, H/4, W/4)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.model = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        saved: dict[int, torch.Tensor] = {}
        for index, layer in enumerate(self.model):
            if index == HEAD:
                assert isinstance(layer, Detect)
                result: tuple[torch.Tensor, torch.Tensor | None] = layer([saved[15], saved[18], saved[21]])
                return result
            x = torch.cat((x, saved[_CONCATS[index]]), 1) if index in _CONCATS else layer(x)
            saved[index] = x
        raise AssertionError("a YOLOv8 network ends in its head")


Shapes = Mapping[str, tuple[int, ...]]


class NotYoloError(ValueError):
    """The weights are not a YOLOv8 detection or segmentation network; the message says what was found."""


def _out(shapes: Shapes, key: str) -> int:
    shape = shapes.get(key)
    if shape is None:
        raise NotYoloError(f"no `{key}`: not the YOLOv8 layout")
    return int(shape[0])


def _in(shapes: Shapes, key: str) -> int:
    shape = shapes.get(key)
    if shape is None or len(shape) < 2:
        raise NotYoloError(f"no `{key}`: not the YOLOv8 layout")
    return int(shape[1])


def _depth(shapes: Shapes, prefix: str) -> int:
    n = 0
    while f"{prefix}.m.{n}.cv1.conv.weight" in shapes:
        n += 1
    return n


def build(shapes: Shapes) -> YoloV8:
    """The network the state dict's shapes describe (keys `model.N....`, as ultralytics saves them); NotYoloError
    when they do not describe YOLOv8 (YOLO11's C3k2 blocks, YOLOv5, a classifier...)."""
    layers: list[nn.Module] = []
    channels: dict[int, int] = {}
    previous = 3
    for index, kind in enumerate(_LAYOUT):
        prefix = f"model.{index}"
        if kind == "conv":
            layer: nn.Module = Conv(
                previous, _out(shapes, f"{prefix}.conv.weight"), int(shapes[f"{prefix}.conv.weight"][2]), 2
            )
            if _in(shapes, f"{prefix}.conv.weight") != previous:
                raise NotYoloError(
                    f"layer {index} takes {_in(shapes, f'{prefix}.conv.weight')} channels, not {previous}"
                )
            previous = _out(shapes, f"{prefix}.conv.weight")
        elif kind == "c2f":
            n = _depth(shapes, prefix)
            if n == 0 or f"{prefix}.m.0.cv1.conv.weight" not in shapes or f"{prefix}.m.0.m.0.cv1.conv.weight" in shapes:
                raise NotYoloError(f"layer {index} is not a C2f block (YOLO11 and other versions are not supported)")
            hidden = _out(shapes, f"{prefix}.cv1.conv.weight") // 2
            out = _out(shapes, f"{prefix}.cv2.conv.weight")
            if _in(shapes, f"{prefix}.cv2.conv.weight") != (2 + n) * hidden:
                raise NotYoloError(f"layer {index} is not a C2f block")
            layer = C2f(previous, out, n, index in _SHORTCUT_C2F, hidden)
            previous = out
        elif kind == "sppf":
            hidden = _out(shapes, f"{prefix}.cv1.conv.weight")
            layer = SPPF(previous, _out(shapes, f"{prefix}.cv2.conv.weight"), hidden)
            previous = _out(shapes, f"{prefix}.cv2.conv.weight")
        elif kind == "up":
            layer = nn.Upsample(scale_factor=2.0, mode="nearest")
        else:
            layer = nn.Identity()  # Concat: done in YoloV8.forward
            previous += channels[_CONCATS[index]]
        channels[index] = previous
        layers.append(layer)
    head = f"model.{HEAD}"
    bins = _in(shapes, f"{head}.dfl.conv.weight")
    masks = _out(shapes, f"{head}.proto.cv3.conv.weight") if f"{head}.proto.cv3.conv.weight" in shapes else 0
    sizes = HeadSizes(
        classes=_out(shapes, f"{head}.cv3.0.2.weight"),
        bins=bins,
        box_hidden=_out(shapes, f"{head}.cv2.0.0.conv.weight"),
        class_hidden=_out(shapes, f"{head}.cv3.0.0.conv.weight"),
        masks=masks,
        mask_hidden=_out(shapes, f"{head}.cv4.0.0.conv.weight") if masks else 0,
        proto_hidden=_out(shapes, f"{head}.proto.cv1.conv.weight") if masks else 0,
    )
    if _out(shapes, f"{head}.cv2.0.2.weight") != 4 * bins:
        raise NotYoloError("the box branch does not match the DFL bins")
    layers.append(Detect((channels[15], channels[18], channels[21]), sizes))
    return YoloV8(layers)


def load(state: Mapping[str, torch.Tensor]) -> YoloV8:
    """The network with these weights, in float32 and eval mode; NotYoloError when the keys or shapes do not fit."""
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    network = build(shapes)
    wanted = {key for key in network.state_dict() if not key.endswith(("dfl.conv.weight", "num_batches_tracked"))}
    given = {key for key in state if not key.endswith("num_batches_tracked")}
    missing, unexpected = wanted - given, given - wanted - {f"model.{HEAD}.dfl.conv.weight"}
    if missing or unexpected:
        named = sorted(missing)[:3] or sorted(unexpected)[:3]
        raise NotYoloError(f"{'missing' if missing else 'unexpected'} weights: {', '.join(named)}")
    network.load_state_dict({key: value.float() for key, value in state.items()}, strict=False)
    return network.eval()


def new(
    widths: tuple[int, int, int, int, int], depths: tuple[int, int], classes: int, *, masks: int = 0, proto: int = 0
) -> YoloV8:
    """A YOLOv8 of the given widths (layers 0, 1, 3, 5, 7) and depths (3- and 6-block C2f stages), with random
    weights: yolov8n is ((16, 32, 64, 128, 256), (1, 2)), 1 class. For tests and benchmarks."""
    w0, w1, w2, w3, w4 = widths
    shallow, deep = depths

    def c2f(c1: int, c2: int, n: int, shortcut: bool) -> C2f:
        return C2f(c1, c2, n, shortcut, c2 // 2)

    layers: list[nn.Module] = [
        Conv(3, w0, 3, 2),
        Conv(w0, w1, 3, 2),
        c2f(w1, w1, shallow, True),
        Conv(w1, w2, 3, 2),
        c2f(w2, w2, deep, True),
        Conv(w2, w3, 3, 2),
        c2f(w3, w3, deep, True),
        Conv(w3, w4, 3, 2),
        c2f(w4, w4, shallow, True),
        SPPF(w4, w4, w4 // 2),
        nn.Upsample(scale_factor=2.0, mode="nearest"),
        nn.Identity(),
        c2f(w4 + w3, w3, shallow, False),
        nn.Upsample(scale_factor=2.0, mode="nearest"),
        nn.Identity(),
        c2f(w3 + w2, w2, shallow, False),
        Conv(w2, w2, 3, 2),
        nn.Identity(),
        c2f(w2 + w3, w3, shallow, False),
        Conv(w3, w3, 3, 2),
        nn.Identity(),
        c2f(w3 + w4, w4, shallow, False),
    ]
    sizes = HeadSizes(
        classes=classes,
        bins=16,
        box_hidden=max(16, w2 // 4, 64),
        class_hidden=max(w2, min(classes, 100)),
        masks=masks,
        mask_hidden=max(w2 // 4, masks) if masks else 0,
        proto_hidden=proto if masks else 0,
    )
    layers.append(Detect((w2, w3, w4), sizes))
    return YoloV8(layers).eval()
