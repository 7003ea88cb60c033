"""Resolved params for a spread of requests, recorded before the request-resolver refactor: the test that reads
`tests/data/golden/params.json` proves the refactor resolves every one of them to the same params (and, with the
golden images, to the same pixels). Re-record (only for an intended change) with:

    .venv/bin/python -m tests.engine.params_golden
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from engine.params import Limits, ModelDefaults

PARAMS_FILE = Path(__file__).resolve().parent.parent / "data" / "golden" / "params.json"

SDXL = ModelDefaults(width=832, height=1216, cfg_scale=5.5, steps=28, sampler="Euler a", schedule="Karras", clip_skip=2)
OWNER_VAE = ModelDefaults(vae="sdxl_vae.safetensors")
DEFAULTS = {"sd1": ModelDefaults(), "sdxl": SDXL, "vae": OWNER_VAE}
TIGHT = Limits(max_steps=30, max_pixels=512 * 512, max_hires_pixels=512 * 512, max_batch=2)


def cases() -> dict[str, tuple[dict[str, Any], str]]:
    """Name -> (options, which model defaults)."""
    found: dict[str, tuple[dict[str, Any], str]] = {
        "bare": ({"prompt": "a cat"}, "sd1"),
        "bare sdxl": ({"prompt": "a cat"}, "sdxl"),
        "sampler given on sdxl drops the model schedule": ({"prompt": "a", "sampler": "DPM++ 2M"}, "sdxl"),
        "schedule given": ({"prompt": "a", "schedule": "Exponential"}, "sdxl"),
        "combined sampler name": ({"prompt": "a", "sampler": "DPM++ 2M Karras"}, "sd1"),
        "lowercase sampler": ({"prompt": "a", "sampler": "euler a"}, "sd1"),
        "text numbers": ({"prompt": "a", "steps": "30", "cfg_scale": "6.5", "width": "768", "height": "512.0"}, "sd1"),
        "seed text": ({"prompt": "a", "seed": " 123 "}, "sd1"),
        "seed max": ({"prompt": "a", "seed": 2**64 - 1}, "sd1"),
        "random seed": ({"prompt": "a", "seed": -1}, "sd1"),
        "empty strings fall back": ({"prompt": "a", "steps": "", "sampler": " ", "seed": ""}, "sdxl"),
        "negative": ({"prompt": "a", "negative_prompt": "blurry"}, "sd1"),
        "batch": ({"prompt": "a", "batch_size": 3}, "sd1"),
        "variation": ({"prompt": "a", "seed": 5, "subseed": 9, "subseed_strength": 0.3}, "sd1"),
        "variation random subseed": ({"prompt": "a", "seed": 5, "subseed_strength": "0.2"}, "sd1"),
        "subseed without strength": ({"prompt": "a", "seed": 5, "subseed": 9}, "sd1"),
        "clip skip": ({"prompt": "a", "clip_skip": 2}, "sd1"),
        "clip skip zero is default": ({"prompt": "a", "clip_skip": 0}, "sdxl"),
        "img2img": ({"prompt": "a", "init_image": "ab" * 32}, "sd1"),
        "img2img strength": ({"prompt": "a", "init_image": "ab" * 32, "denoising_strength": 0.4}, "sd1"),
        "txt2img denoise ignored": ({"prompt": "a", "denoising_strength": 0.4}, "sd1"),
        "hires": ({"prompt": "a", "enable_hr": True}, "sd1"),
        "hires text bool": ({"prompt": "a", "enable_hr": "true", "hr_scale": "1.5", "hr_steps": "10"}, "sd1"),
        "hires resize": ({"prompt": "a", "enable_hr": True, "hr_resize_x": 768, "hr_resize_y": 640}, "sd1"),
        "hires upscaler": (
            {"prompt": "a", "enable_hr": True, "hr_upscaler": "Lanczos", "denoising_strength": 0.3},
            "sd1",
        ),
        "hires sampler": ({"prompt": "a", "enable_hr": True, "hr_sampler": "Euler", "hr_schedule": "Karras"}, "sd1"),
        "hires same sampler": ({"prompt": "a", "enable_hr": True, "hr_sampler": "Use same sampler"}, "sd1"),
        "hires sampler off": ({"prompt": "a", "hr_sampler": "Euler"}, "sd1"),
        "rng": ({"prompt": "a", "rng": "cpu"}, "sd1"),
        "ensd": ({"prompt": "a", "ensd": "31337"}, "sd1"),
        "seed resize": ({"prompt": "a", "seed_resize_from_w": 320, "seed_resize_from_h": 448}, "sd1"),
        "vae named": ({"prompt": "a", "vae": "vae-ft-mse.safetensors"}, "sd1"),
        "vae automatic with owner default": ({"prompt": "a", "vae": "Automatic"}, "vae"),
        "vae none with owner default": ({"prompt": "a", "vae": "None"}, "vae"),
        "owner vae": ({"prompt": "a"}, "vae"),
        "cfg zero": ({"prompt": "a", "cfg_scale": 0}, "sd1"),
    }
    return found


def resolved(name: str, options: dict[str, Any], defaults: str, build: Any) -> dict[str, Any] | str:
    """What `build(options, model, limits, defaults, rng)` gives for a case: the params, or the refusal's text."""
    from engine.errors import InvalidParamsError

    limits = TIGHT if name.startswith("tight") else Limits()
    try:
        params = build(options, model="m", limits=limits, defaults=DEFAULTS[defaults], rng=random.Random(name))
    except InvalidParamsError as err:
        return str(err)
    return params.to_dict()  # type: ignore[no-any-return]


REFUSALS: dict[str, tuple[dict[str, Any], str]] = {
    "tight steps": ({"prompt": "a", "steps": 40}, "sd1"),
    "tight pixels": ({"prompt": "a", "width": 768, "height": 768}, "sd1"),
    "tight batch": ({"prompt": "a", "batch_size": 3}, "sd1"),
    "tight hires": ({"prompt": "a", "enable_hr": True}, "sd1"),
    "tight ok": ({"prompt": "a", "steps": 30, "width": 512, "height": 512}, "sd1"),
    "tight sdxl default size": ({"prompt": "a"}, "sdxl"),
    "tight odd width": ({"prompt": "a", "width": 513}, "sd1"),
    "tight bad sampler": ({"prompt": "a", "sampler": "Euler b"}, "sd1"),
    "tight bad seed": ({"prompt": "a", "seed": "abc"}, "sd1"),
    "tight bad bool": ({"prompt": "a", "enable_hr": "maybe"}, "sd1"),
    "tight bad upscaler": (
        {"prompt": "a", "enable_hr": True, "width": 256, "height": 256, "hr_upscaler": "../4x-UltraSharp"},
        "sd1",
    ),
    "tight hires img2img": ({"prompt": "a", "enable_hr": True, "init_image": "cd" * 32}, "sd1"),
    "tight vae path": ({"prompt": "a", "vae": "../x"}, "sd1"),
    "tight rng": ({"prompt": "a", "rng": "TPU"}, "sd1"),
    "tight cfg": ({"prompt": "a", "cfg_scale": 31}, "sd1"),
    "tight long prompt": ({"prompt": "a" * 4001}, "sd1"),
    "tight unknown option": ({"prompt": "a", "restore_faces": True}, "sd1"),
    "tight strength": ({"prompt": "a", "subseed_strength": 1.5}, "sd1"),
    "tight clip skip": ({"prompt": "a", "clip_skip": 13}, "sd1"),
    "tight nan": ({"prompt": "a", "cfg_scale": "nan"}, "sd1"),
    "tight seed resize": ({"prompt": "a", "seed_resize_from_w": -8}, "sd1"),
    "tight hires sampler": (
        {"prompt": "a", "width": 256, "height": 256, "enable_hr": True, "hr_sampler": "Nope"},
        "sd1",
    ),
}


def record() -> dict[str, Any]:
    from engine.params import build_params

    return {name: resolved(name, options, d, build_params) for name, (options, d) in (cases() | REFUSALS).items()}


if __name__ == "__main__":
    PARAMS_FILE.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"recorded {PARAMS_FILE}")
