"""Golden images: every sampler and the A1111 features that touch the denoising loop, on builtin:tiny (and the
shapes LoRA on builtin:shapes), as hashes of the exact pixels and the exact parameter text.

The hashes in `tests/data/golden/tiny.json` were recorded before the generation-plan refactor, so the test that reads
them proves the refactor changed no image. Re-record (only for an intended change of output) with:

    .venv/bin/python -m tests.engine.golden
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.params import GenerationParams
from engine.samplers import SCHEDULES, sampler_names

GOLDEN_FILE = Path(__file__).resolve().parent.parent / "data" / "golden" / "tiny.json"
IMAGES_DIR = GOLDEN_FILE.parent / "tiny"  # the recorded images themselves, for CPUs whose kernels differ


def init_png() -> bytes:
    """A 64x64 gradient, the init image of the img2img cases."""
    y, x = np.mgrid[0:64, 0:64]
    array = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def base(**changes: Any) -> GenerationParams:
    params = GenerationParams(
        prompt="a lighthouse at dusk", model="builtin:tiny", seed=42, steps=4, sampler="Euler", width=64, height=64
    )
    return params.replace(**changes)


def cases(init_image: str) -> dict[str, GenerationParams]:
    """Name -> params. `init_image` is the blob hash of `init_png()`."""
    found: dict[str, GenerationParams] = {}
    for sampler in sampler_names():
        found[f"txt2img {sampler}"] = base(sampler=sampler, negative_prompt="fog")
        found[f"img2img {sampler}"] = base(sampler=sampler, init_image=init_image, denoising_strength=0.6)
        found[f"hires {sampler}"] = base(
            sampler=sampler, enable_hr=True, hr_scale=1.5, hr_steps=2, denoising_strength=0.55
        )
    for schedule in SCHEDULES:
        found[f"schedule {schedule.label}"] = base(sampler="DPM++ 2M", schedule=schedule.label, steps=5)
    found |= {
        "batch Euler a": base(sampler="Euler a", batch_size=2),
        "batch DPM++ SDE": base(sampler="DPM++ SDE", batch_size=2),
        "variation": base(subseed=7, subseed_strength=0.3, batch_size=2, sampler="Euler a"),
        "seed resize": base(seed_resize_from_w=48, seed_resize_from_h=80),
        "rng CPU": base(rng="CPU", sampler="Euler a"),
        "rng NV": base(rng="NV", sampler="Euler a"),
        "ensd Euler a": base(sampler="Euler a", ensd=31337),
        "ensd DPM++ 2M": base(sampler="DPM++ 2M", ensd=31337),
        "prompt editing": base(prompt="a [lighthouse:castle:0.5] at dusk", steps=6),
        "prompt editing heun": base(prompt="a [lighthouse:castle:2] at dusk", sampler="Heun"),
        "alternation": base(prompt="a [cat|dog|fox] on a mat", steps=6),
        "and": base(prompt="a cat AND a dog :0.7"),
        "emphasis": base(prompt="a (lighthouse:1.4) at [dusk]"),
        "break": base(prompt="a lighthouse BREAK at dusk", negative_prompt="fog BREAK rain"),
        "long prompt": base(prompt=", ".join(["a lighthouse at dusk"] * 25)),
        "clip skip": base(clip_skip=2),
        "cfg": base(cfg_scale=3.5),
        "hires resize crop": base(enable_hr=True, hr_resize_x=128, hr_resize_y=96, denoising_strength=0.6),
        "hires lanczos": base(enable_hr=True, hr_scale=2.0, hr_upscaler="Lanczos", denoising_strength=0.5),
        "hires nearest-exact": base(enable_hr=True, hr_scale=2.0, hr_upscaler="Latent (nearest-exact)"),
        "img2img strength 0": base(init_image=init_image, denoising_strength=0.0),
        "img2img strength 1": base(init_image=init_image, denoising_strength=1.0, sampler="DPM++ 2M"),
        "img2img 96x64": base(init_image=init_image, denoising_strength=0.7, width=96),
        "shapes": base(model="builtin:shapes", prompt="a red circle on a blue background", steps=8),
        "shapes green lora": base(
            model="builtin:shapes", prompt="a red circle on a blue background <lora:green:0.8>", steps=8
        ),
        "shapes lora te unet": base(
            model="builtin:shapes", prompt="a red circle on a blue background <lora:green:0.5:1.2>", steps=8
        ),
    }
    return found


def fingerprint(engine: Any, params: GenerationParams) -> list[dict[str, str]]:
    """Per image: sha256 of its RGB pixels and its parameter text."""
    return [fingerprint_of(raw.image, raw.infotext) for raw in engine.generate(params)]


def fingerprint_of(image: Image.Image, infotext: str) -> dict[str, str]:
    return {"pixels": hashlib.sha256(image.tobytes()).hexdigest(), "infotext": infotext}


def image_path(name: str, index: int) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return IMAGES_DIR / f"{slug}-{index}.png"


def platform() -> dict[str, str]:
    """What the hashes depend on besides the code: torch's build, its CPU kernels and its thread count."""
    import torch

    return {
        "torch": torch.__version__,
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "threads": str(torch.get_num_threads()),
    }


def record(cache: Path) -> None:
    from engine.models.registry import ModelRegistry
    from engine.pipeline import DiffusersEngine

    (cache / "models").mkdir(parents=True, exist_ok=True)
    engine = DiffusersEngine(ModelRegistry(cache / "models", cache / "cache"), "cpu")
    init = engine.blobs.put(init_png())
    results: dict[str, list[dict[str, str]]] = {}
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    for name, params in cases(init).items():
        raws = engine.generate(params)
        results[name] = [fingerprint_of(raw.image, raw.infotext) for raw in raws]
        for index, raw in enumerate(raws):
            raw.image.save(image_path(name, index), format="PNG", optimize=True)
    GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN_FILE.write_text(json.dumps({"platform": platform(), "cases": results}, indent=1) + "\n", encoding="utf-8")
    print(f"recorded {len(results)} cases in {GOLDEN_FILE}", file=sys.stderr)


if __name__ == "__main__":
    import tempfile

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        record(Path(tmp))
