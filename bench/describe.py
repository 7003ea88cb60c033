"""`/describe`'s cost: a full-size random ViT tagger (wd-vit-tagger-v3's shape: ViT-B/16 at 448 px, 10,861 tags) run
as Easel runs taggers (its ONNX export through onnxruntime, the reference preprocessing and thresholds), against the
same network in torch eager, in one process.

    python -m bench.describe [--repeats 5] [--out bench/describe.json]

Seconds per image are medians of `repeats` after a warm-up; the export (about 350 MB) goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image

from bench.timing import machine, report, timed
from engine.taggers.files import TaggerLibrary
from engine.taggers.run import TaggerModels
from engine.taggers.tags import prepare

SIDE, PATCH, WIDTH, DEPTH, HEADS, TAGS = 448, 16, 768, 12, 12, 10861


class RandomViT(torch.nn.Module):
    """ViT-B/16 with wd-vit-tagger-v3's interface: NHWC float32 BGR 0-255 in, one sigmoid per tag out."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = torch.nn.Conv2d(3, WIDTH, PATCH, stride=PATCH)
        self.position = torch.nn.Parameter(torch.randn(1, (SIDE // PATCH) ** 2, WIDTH) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(WIDTH, HEADS, 4 * WIDTH, activation="gelu", batch_first=True,
                                                 norm_first=True, dropout=0.0)  # fmt: skip
        self.blocks = torch.nn.TransformerEncoder(layer, DEPTH, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(WIDTH)
        self.head = torch.nn.Linear(WIDTH, TAGS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x.permute(0, 3, 1, 2) / 127.5 - 1).flatten(2).transpose(1, 2) + self.position
        return torch.sigmoid(self.head(self.norm(self.blocks(tokens)).mean(1)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/describe.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    network = RandomViT().eval()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (768, 512, 3), dtype=np.uint8))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "wd-vit-random"
        folder.mkdir()
        started = time.perf_counter()
        sample = (torch.zeros(1, SIDE, SIDE, 3),)
        axes = {"input": {0: "batch"}}
        torch.onnx.export(network, sample, str(folder / "model.onnx"), dynamo=False, input_names=["input"],
                          output_names=["output"], dynamic_axes=axes)  # fmt: skip
        export_s = time.perf_counter() - started
        with (folder / "selected_tags.csv").open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["tag_id", "name", "category", "count"])
            for i in range(TAGS):
                writer.writerow([i, f"tag_{i}", 9 if i < 4 else 0, 1])
        models = TaggerModels(TaggerLibrary([Path(tmp)]), "cpu")
        easel_s = timed(lambda: models.describe("wd-vit-random", image), args.repeats)
        tensor = torch.from_numpy(prepare(image, SIDE))

        def eager() -> None:
            with torch.inference_mode():
                network(tensor)

        torch_s = timed(eager, args.repeats)
    results = {
        **machine(),
        "network": f"ViT-B/{PATCH} at {SIDE} px, {TAGS} tags (random weights)",
        "export s": export_s,
        "Easel (onnxruntime) s per image": easel_s,
        "torch eager s per image": torch_s,
        "Easel / torch eager": easel_s / torch_s,
    }
    report(results, args.out)


if __name__ == "__main__":
    main()
