"""Inpainting's cost: "only masked" against whole picture on the same image and mask, and an inpaint job against a
plain img2img job of the same size (the mask's preparation, the per-step blend and the overlay), in one process.

    python -m bench.inpaint [--model builtin:tiny] [--size 256] [--steps 12] [--repeats 3] [--out bench/inpaint.json]

Engine calls are timed in turns on one thread (see bench/timing.py), medians of `repeats` after a warm-up.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from PIL import Image, ImageDraw

from bench.timing import in_turns, machine, report
from engine.models.registry import ModelRegistry
from engine.params import GenerationParams
from engine.pipeline import DiffusersEngine


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/inpaint.json")
    args = parser.parse_args()
    size = args.size
    with tempfile.TemporaryDirectory() as tmp:
        engine = DiffusersEngine(ModelRegistry(Path(tmp) / "models", Path(tmp) / "cache"), "cpu")
        rng = np.random.default_rng(0)
        init = engine.blobs.put(_png(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))))
        mask_image = Image.new("L", (size, size))
        ImageDraw.Draw(mask_image).ellipse((size // 2, size // 8, size - size // 8, size // 2), fill=255)
        mask = engine.blobs.put(_png(mask_image))
        base = GenerationParams(
            prompt="a lighthouse at dusk", model=args.model, seed=1, steps=args.steps, sampler="Euler a",
            width=size, height=size, init_image=init, denoising_strength=0.75,
        )  # fmt: skip
        whole = base.replace(mask=mask)
        only = whole.replace(inpaint_full_res=True, inpaint_full_res_padding=32)
        plain_s, whole_s = in_turns(lambda: engine.generate(base), lambda: engine.generate(whole), args.repeats)
        whole_again_s, only_s = in_turns(lambda: engine.generate(whole), lambda: engine.generate(only), args.repeats)
    results = {
        **machine(),
        "model": args.model,
        "size": f"{size}x{size}",
        "steps": args.steps,
        "img2img s": plain_s,
        "inpaint (whole picture) s": whole_s,
        "inpaint / img2img": whole_s / plain_s,
        "only masked s": only_s,
        "only masked / whole picture": only_s / whole_again_s,
    }
    report(results, args.out)


if __name__ == "__main__":
    main()
