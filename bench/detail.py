"""The detailer's cost: a job with ADetailer's face pass (one region, then four) against the same job without it,
and the detector itself (a full-size random YOLOv8n, as `face_yolov8n`, at ultralytics' 640) against the job, in
one process.

    python -m bench.detail [--model builtin:tiny] [--size 256] [--steps 12] [--repeats 3] [--out bench/detail.json]

The regions are injected (a random detector finds random things): each is a face-sized box, so the pass runs what
it would for that many faces, each an "only masked" inpaint at the job's size, ADetailer's defaults otherwise.
Engine calls are timed in turns on one thread (see bench/timing.py), medians of `repeats` after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image

from bench.timing import in_turns, machine, report, timed
from engine.detailer import DetailerTab
from engine.detectors import yolo
from engine.detectors.masks import Detections, box_masks
from engine.detectors.predict import Raw, detect
from engine.models.registry import ModelRegistry
from engine.params import GenerationParams
from engine.pipeline import DiffusersEngine


class Injected:
    """Finds `count` face-sized boxes on any image."""

    def __init__(self, count: int) -> None:
        self.count = count

    def detect(self, name: str, image: Image.Image, confidence: float) -> Detections:
        width, height = image.size
        side = width // 6
        boxes = [(float(x), float(y), float(x + side), float(y + side))
                 for x, y in [(width // 8, height // 8), (width // 2, height // 8), (width // 8, height // 2),
                              (width // 2, height // 2)][: self.count]]  # fmt: skip
        return Detections(image.size, tuple(boxes), tuple(0.9 for _ in boxes), box_masks(boxes, image.size))


def _detector_seconds(repeats: int) -> float:
    torch.manual_seed(0)
    network = yolo.new((16, 32, 64, 128, 256), (1, 2), 1)  # yolov8n's widths and depths, 1 class as face_yolov8n
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (768, 512, 3), dtype=np.uint8))

    def run(tensor: np.ndarray) -> Raw:
        with torch.inference_mode():
            predictions, _ = network(torch.from_numpy(tensor))
        return Raw(predictions[0].numpy())

    return timed(lambda: detect(run, image, 0.3), repeats)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/detail.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = DiffusersEngine(ModelRegistry(Path(tmp) / "models", Path(tmp) / "cache"), "cpu")
        job = GenerationParams(prompt="two friends at a cafe", model=args.model, seed=1, steps=args.steps,
                               sampler="DPM++ 2M", width=args.size, height=args.size)  # fmt: skip
        detailed = job.replace(detailers=(DetailerTab(model="face_yolov8n"),))

        def with_regions(count: int) -> None:
            engine.detectors = Injected(count)  # type: ignore[assignment]
            engine.generate(detailed)

        plain_s, one_s = in_turns(lambda: engine.generate(job), lambda: with_regions(1), args.repeats)
        plain_again_s, four_s = in_turns(lambda: engine.generate(job), lambda: with_regions(4), args.repeats)
    detector_s = _detector_seconds(args.repeats)
    results = {
        **machine(),
        "model": args.model,
        "size": f"{args.size}x{args.size}",
        "steps": args.steps,
        "job s": plain_s,
        "job + detailer, 1 region s": one_s,
        "detailer pass / job, 1 region": (one_s - plain_s) / plain_s,
        "job + detailer, 4 regions s": four_s,
        "detailer pass / job, 4 regions": (four_s - plain_again_s) / plain_again_s,
        "YOLOv8n detection (512x768 image, 640) s": detector_s,
    }
    report(results, args.out)


if __name__ == "__main__":
    main()
