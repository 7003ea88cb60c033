"""Upscaler speed: seconds per output megapixel of a full-size ESRGAN (RRDBNet, 23 blocks, 64 filters, random
weights) and a full-size Real-ESRGAN Compact (32 convolutions), x2 and x4, at several tile sizes; every figure a ratio
against A1111's default tile (192, overlap 8) in the same process, and Easel's tiling against A1111's own (the
PIL-space reference in tests/reference/a1111_upscale.py) on the same network and image.

    python -m bench.upscale [--size 160] [--tiles 0,96,192,256] [--out bench/upscale.json]

A 4x model runs once for both x2 and x4 (A1111 then resizes with Lanczos): x2 pays the x4 network for a quarter of
the output pixels. Tile 0 is the whole image at once. On a GPU (when one is present) the same runs use float16 for
Compact, as A1111 loads Real-ESRGAN's own files, and float32 for ESRGAN, as its ESRGAN folder's.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.timing import on_thread
from engine.upscalers.arch import CompactNet, RRDBNet
from engine.upscalers.run import ModelUpscaler, upscale


def _network(kind: str, device: torch.device) -> tuple[torch.nn.Module, torch.dtype]:
    torch.manual_seed(0)
    if kind == "ESRGAN":
        net: torch.nn.Module = RRDBNet(blocks=23, filters=64, growth=32, ups=2, shuffle=1)
        dtype = torch.float32
    else:
        net = CompactNet(convs=32, features=64, scale=4, prelu=True)
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    return net.eval().requires_grad_(False).to(device, dtype), dtype


def _picture(size: int) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(0)
    base = np.stack([x * 255 / size, y * 255 / size, (x + y) * 127 / size], axis=-1) + rng.normal(
        0, 10, (size, size, 3)
    )
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _timed(fn: Any) -> tuple[float, Any]:
    def run() -> tuple[float, Any]:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - started, out

    return on_thread(run)


def _against_a1111(
    network: torch.nn.Module, device: torch.device, dtype: torch.dtype, image: Image.Image
) -> dict[str, float]:
    """Easel's tiling against A1111's own (PIL crop and paste) on the same network and image: time and bytes."""
    from tests.reference import a1111_upscale as a1111

    class Held(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = network

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.net(x)
            return out

    reference: Any = a1111.Upscaler("ESRGAN", Held())  # type: ignore[no-untyped-call]
    theirs, expected = _timed(lambda: reference.upscale(image, 4.0))
    mine, ours = _timed(lambda: upscale(image, 4.0, ModelUpscaler(network, device, dtype).upscale_once))
    same = bool(np.array_equal(np.asarray(ours), np.asarray(expected)))
    print(f"ESRGAN               easel / A1111 tiling: {mine / theirs:.3f} (same bytes: {same})")
    return {"easel vs A1111 tiling (tile 192, x4)": mine / theirs, "same bytes as A1111": float(same)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=160, help="the source image's side")
    parser.add_argument("--tiles", default="0,96,192,256")
    parser.add_argument("--out", default="bench/upscale.json")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    image = _picture(args.size)
    tiles = [int(t) for t in args.tiles.split(",")]
    results: dict[str, Any] = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "source": f"{args.size}x{args.size}",
    }
    for kind in ("ESRGAN", "Real-ESRGAN Compact"):
        network, dtype = _network(kind, device)
        _timed(lambda network=network, dtype=dtype: ModelUpscaler(network, device, dtype, 0).upscale_once(_picture(32)))
        row: dict[str, float] = {}
        for tile in tiles:
            model = ModelUpscaler(network, device, dtype, tile)
            seconds, out4 = _timed(lambda model=model: upscale(image, 4.0, model.upscale_once))
            x2_seconds, _ = _timed(lambda model=model: upscale(image, 2.0, model.upscale_once))
            row[f"tile {tile}: x4 s/MP"] = seconds / (out4.width * out4.height / 1e6)
            row[f"tile {tile}: x2 s/MP"] = x2_seconds / (out4.width * out4.height / 4e6)
            print(f"{kind:20} tile {tile:4}: x4 {row[f'tile {tile}: x4 s/MP']:7.2f} s/MP, "
                  f"x2 {row[f'tile {tile}: x2 s/MP']:7.2f} s/MP", flush=True)  # fmt: skip
        base = row.get("tile 192: x4 s/MP")
        if base:
            for tile in tiles:
                row[f"tile {tile} vs 192"] = row[f"tile {tile}: x4 s/MP"] / base
        if kind == "ESRGAN" and 192 in tiles:
            row.update(_against_a1111(network, device, dtype, image))
        results[kind] = row
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
