"""A tiny random WD14-style tagger for tests: an ONNX classifier with the v3 interface (input N x S x S x 3 float32,
BGR, 0-255; one sigmoid per tag) and its own `selected_tags.csv` (4 ratings, general tags, character tags)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

RATING_NAMES = ("general", "sensitive", "questionable", "explicit")
GENERAL_NAMES = (*tuple(f"tag_{i}" for i in range(36)), "1girl", "long_hair", "^_^", "hat_(object)")
CHARACTER_NAMES = ("hatsune_miku", "kirisame_marisa", "saber_(fate)", "rem_(re:zero)")
SIDE = 64


class TinyTagger(torch.nn.Module):
    def __init__(self, tags: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 8, 8, stride=8)
        self.head = torch.nn.Linear(8, tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv(x.permute(0, 3, 1, 2) / 255.0 - 0.5)).mean(dim=(2, 3))
        return torch.sigmoid(self.head(features) * 3)


def write_tagger(folder: Path, *, side: int = SIDE, seed: int = 0, extra_rows: int = 0) -> Path:
    """`folder/model.onnx` and `folder/selected_tags.csv`; `extra_rows` adds rows the model has no output for."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [(n, 9) for n in RATING_NAMES] + [(n, 0) for n in GENERAL_NAMES] + [(n, 4) for n in CHARACTER_NAMES]
    model = TinyTagger(len(names), seed)
    torch.onnx.export(model, torch.zeros(1, side, side, 3), str(folder / "model.onnx"), dynamo=False,
                      input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}})  # fmt: skip
    with (folder / "selected_tags.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["tag_id", "name", "category", "count"])
        for i, (name, category) in enumerate(names + [(f"extra_{j}", 0) for j in range(extra_rows)]):
            writer.writerow([i, name, category, 100])
    return folder
