"""The upscaler networks Easel runs itself (ESRGAN's RRDBNet and Real-ESRGAN Compact's SRVGGNet, what civitai's
`4x-UltraSharp`, `Remacri`, `R-ESRGAN 4x+` and `General 4xV3` are) and the safe loading of their weights; spandrel
for other architectures where it imports (on CUDA machines; its torchvision import fails next to the CPU torch).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from engine.upscalers.files import Architecture, detect, esrgan_layout, read_pickle_structure, state_dict_prefix, unwrap

log = logging.getLogger(__name__)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = F.leaky_relu(x, negative_slope=0.2)
    return out


class _DenseBlock(nn.Module):
    """Five convolutions, each seeing the block's input and every earlier output; a 0.2-scaled residual."""

    def __init__(self, filters: int, growth: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(filters, growth, 3, padding=1)
        self.conv2 = nn.Conv2d(filters + growth, growth, 3, padding=1)
        self.conv3 = nn.Conv2d(filters + 2 * growth, growth, 3, padding=1)
        self.conv4 = nn.Conv2d(filters + 3 * growth, growth, 3, padding=1)
        self.conv5 = nn.Conv2d(filters + 4 * growth, filters, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(_lrelu(conv(torch.cat(features, 1))))
        out: torch.Tensor = self.conv5(torch.cat(features, 1)) * 0.2 + x
        return out


class _ResidualInResidual(nn.Module):
    def __init__(self, filters: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = _DenseBlock(filters, growth)
        self.rdb2 = _DenseBlock(filters, growth)
        self.rdb3 = _DenseBlock(filters, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x
        return out


class RRDBNet(nn.Module):
    """ESRGAN: a trunk of residual-in-residual dense blocks, then x2 nearest upsampling + conv per `ups`. Real-ESRGAN's
    x2 and x1 models first fold each 2x2 (4x4) patch into channels (`shuffle`)."""

    def __init__(self, *, blocks: int, filters: int, growth: int, ups: int, shuffle: int, channels: int = 3) -> None:
        super().__init__()
        self.shuffle = shuffle
        self.scale = 2**ups // shuffle
        self.conv_first = nn.Conv2d(channels * shuffle * shuffle, filters, 3, padding=1)
        self.body = nn.Sequential(*[_ResidualInResidual(filters, growth) for _ in range(blocks)])
        self.conv_body = nn.Conv2d(filters, filters, 3, padding=1)
        self.ups = nn.ModuleList(nn.Conv2d(filters, filters, 3, padding=1) for _ in range(ups))
        self.conv_hr = nn.Conv2d(filters, filters, 3, padding=1)
        self.conv_last = nn.Conv2d(filters, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.shuffle > 1:
            pad_h, pad_w = -height % self.shuffle, -width % self.shuffle
            if pad_h or pad_w:
                x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
            x = F.pixel_unshuffle(x, self.shuffle)
        features = self.conv_first(x)
        features = features + self.conv_body(self.body(features))
        for conv in self.ups:
            features = _lrelu(conv(F.interpolate(features, scale_factor=2, mode="nearest")))
        out: torch.Tensor = self.conv_last(_lrelu(self.conv_hr(features)))
        return out[..., : height * self.scale, : width * self.scale]


class CompactNet(nn.Module):
    """Real-ESRGAN Compact (SRVGGNetCompact): plain convolutions with PReLU, a pixel shuffle, plus the nearest-
    upscaled input."""

    def __init__(self, *, convs: int, features: int, scale: int, prelu: bool, channels: int = 3) -> None:
        super().__init__()
        self.scale = scale

        def activation() -> nn.Module:
            return nn.PReLU(num_parameters=features) if prelu else nn.LeakyReLU(0.1)

        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), activation()]
        for _ in range(convs):
            layers += [nn.Conv2d(features, features, 3, padding=1), activation()]
        layers.append(nn.Conv2d(features, channels * scale * scale, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = F.pixel_shuffle(self.body(x), self.scale)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")


def build(architecture: Architecture) -> nn.Module:
    """An empty network of the detected sizes."""
    if architecture.name == "ESRGAN":
        return RRDBNet(
            blocks=architecture.get("blocks"),
            filters=architecture.get("filters"),
            growth=architecture.get("growth"),
            ups=architecture.get("ups"),
            shuffle=architecture.get("shuffle"),
        )
    if architecture.name == "Real-ESRGAN Compact":
        return CompactNet(
            convs=architecture.get("convs"),
            features=architecture.get("features"),
            scale=architecture.scale,
            prelu=bool(architecture.get("prelu")),
        )
    raise ValueError(f"Easel does not build {architecture.name} networks itself")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A file's tensors, wrappers dropped. A `.pth` is first read by the structure reader (only tensors and plain
    containers), then by torch's own weights-only unpickler: no pickle runs code."""
    if path.suffix.lower() == ".safetensors":
        tensors = load_file(str(path), device="cpu")
    elif path.suffix.lower() == ".pth":
        read_pickle_structure(path)  # ValueError naming the forbidden global, before torch opens it
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        tensors = _flatten(unwrap(loaded))
    else:
        raise ValueError(f"Easel reads upscalers from .safetensors and .pth files, not {path.suffix}")
    prefix = state_dict_prefix(set(tensors))
    return {k.removeprefix(prefix): v for k, v in tensors.items()}


def _flatten(found: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if isinstance(found, torch.Tensor):
        out[prefix] = found
    elif isinstance(found, dict):
        for key, value in found.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _renamed(tensors: dict[str, torch.Tensor], architecture: Architecture) -> dict[str, torch.Tensor]:
    if architecture.name != "ESRGAN":
        return tensors
    layout = esrgan_layout({k: tuple(v.shape) for k, v in tensors.items()})
    assert layout is not None
    out = {}
    for old, new in layout.items():
        for kind in ("weight", "bias"):
            out[f"{new}.{kind}"] = tensors[f"{old}.{kind}"]
    return out


def spandrel_available() -> bool:
    return importlib.util.find_spec("spandrel") is not None


def load_network(path: Path, architecture: Architecture | None = None) -> tuple[nn.Module, Architecture]:
    """The network in a file, in eval mode on the CPU: Easel's own for ESRGAN and Compact, spandrel's for the rest."""
    tensors = read_weights(path)
    try:
        found = detect({k: tuple(v.shape) for k, v in tensors.items()})
    except ValueError:
        if not spandrel_available():
            raise
        return _spandrel_network(tensors)
    network = build(found)
    network.load_state_dict(_renamed(tensors, found), strict=True)
    return network.eval().requires_grad_(False), found


def _spandrel_network(tensors: dict[str, torch.Tensor]) -> tuple[nn.Module, Architecture]:
    from spandrel import ImageModelDescriptor, ModelLoader

    descriptor = ModelLoader().load_from_state_dict(tensors)
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ValueError("not a single-image model (spandrel)")
    module: nn.Module = descriptor.model
    return module.eval().requires_grad_(False), Architecture(str(descriptor.architecture.name), int(descriptor.scale))


def detect_with_spandrel(path: Path) -> Architecture:
    """The architecture spandrel reads in a file (the library's `extra` detector where spandrel imports)."""
    return _spandrel_network(read_weights(path))[1]
