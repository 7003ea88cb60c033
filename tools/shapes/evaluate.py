"""Score the saved `builtin:shapes` pipeline: does it draw the colours and shape the prompt asks for?

`python -m tools.shapes.evaluate` samples held-out and seen combinations over several seeds with DPM++ 2M,
20 steps, CFG 5 at 64×64, reads each image back with the checker, and times one image.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
from PIL import Image

from tools.shapes import data
from tools.shapes.checker import classify

log = logging.getLogger("tools.shapes.evaluate")

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "engine" / "data" / "builtin" / "shapes"
WORK = Path(__file__).resolve().parent / "work"
Combo = tuple[str, str, str]


@dataclass(frozen=True)
class Scores:
    """Accuracy of each part of the prompt, and of all three at once, over `n` images."""

    n: int
    fg: float
    bg: float
    shape: float
    all_three: float

    def __str__(self) -> str:
        return (
            f"n={self.n}: fg {self.fg:.0%} / bg {self.bg:.0%} / shape {self.shape:.0%}, all three {self.all_three:.0%}"
        )


def load_pipeline(path: Path = MODEL) -> StableDiffusionPipeline:
    """The pipeline as the engine would load it, with the sampler the model was checked with."""
    pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(
    pipe: StableDiffusionPipeline,
    jobs: list[tuple[Combo, int]],
    steps: int = 20,
    guidance: float = 5.0,
    batch: int = 16,
) -> list[Image.Image]:
    """One image per (combo, seed); each image has its own seeded generator, so batches keep seeds."""
    images: list[Image.Image] = []
    for i in range(0, len(jobs), batch):
        chunk = jobs[i : i + batch]
        out = pipe(
            prompt=[data.caption(*combo) for combo, _ in chunk],
            height=data.SIZE,
            width=data.SIZE,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=[torch.Generator("cpu").manual_seed(seed) for _, seed in chunk],
        )
        images.extend(out.images)
    return images


def score(jobs: list[tuple[Combo, int]], images: list[Image.Image]) -> Scores:
    hits = np.zeros((len(jobs), 3), dtype=bool)
    for row, ((fg, shape, bg), _), img in zip(hits, jobs, images, strict=True):
        got_fg, got_bg, got_shape = classify(img)
        row[:] = (got_fg == fg, got_bg == bg, got_shape == shape)
    fg_acc, bg_acc, shape_acc = (float(v) for v in hits.mean(axis=0))
    return Scores(len(jobs), fg=fg_acc, bg=bg_acc, shape=shape_acc, all_three=float(hits.all(axis=1).mean()))


def seen_sample(count: int, seed: int = 0) -> list[Combo]:
    return random.Random(seed).sample(data.seen_combinations(), count)


def time_one_image(pipe: StableDiffusionPipeline, steps: int = 20, guidance: float = 5.0, repeats: int = 3) -> float:
    """Best-of-N seconds for one 64×64 image at batch 1, after a warm-up run."""
    prompt = data.caption(*data.HELD_OUT[0])
    best = float("inf")
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        pipe(prompt, height=data.SIZE, width=data.SIZE, num_inference_steps=steps, guidance_scale=guidance,
             generator=torch.Generator("cpu").manual_seed(i))  # fmt: skip
        if i:
            best = min(best, time.perf_counter() - t0)
    return best


def save_grid(images: list[Image.Image], path: Path, columns: int = 8) -> None:
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * data.SIZE, rows * data.SIZE))
    for i, img in enumerate(images):
        grid.paste(img, ((i % columns) * data.SIZE, (i // columns) * data.SIZE))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--seeds", type=int, default=8, help="seeds per held-out combination")
    p.add_argument("--seen", type=int, default=24, help="how many seen combinations to sample")
    p.add_argument("--seen-seeds", type=int, default=4)
    p.add_argument("--first-seed", type=int, default=1000, help="seeds are first-seed, first-seed+1, ...")
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)

    pipe = load_pipeline(args.model)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    held = [(c, s) for c in data.HELD_OUT for s in seeds]
    seen_seeds = range(args.first_seed, args.first_seed + args.seen_seeds)
    seen = [(c, s) for c in seen_sample(args.seen) for s in seen_seeds]

    t0 = time.perf_counter()
    held_images = generate(pipe, held, args.steps, args.guidance)
    seen_images = generate(pipe, seen, args.steps, args.guidance)
    elapsed = time.perf_counter() - t0
    log.info("held-out (%d combos × %d seeds): %s", len(data.HELD_OUT), args.seeds, score(held, held_images))
    log.info("seen (%d combos × %d seeds): %s", args.seen, args.seen_seeds, score(seen, seen_images))
    log.info("%d images in %.1f s (batch 16)", len(held) + len(seen), elapsed)
    save_grid(held_images, WORK / "eval_held_out.png", columns=args.seeds)
    save_grid(seen_images[:64], WORK / "eval_seen.png")
    seconds = time_one_image(pipe, args.steps, args.guidance)
    log.info("one %d×%d image, %d steps, batch 1: %.2f s", data.SIZE, data.SIZE, args.steps, seconds)


if __name__ == "__main__":
    main()
