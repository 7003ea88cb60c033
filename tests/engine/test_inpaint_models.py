"""Inpainting checkpoints (a 9-channel UNet), SD 1.x and SDXL, as single files: listed as their family's
inpainting models, loaded offline, and drawn with A1111's image conditioning, with or without a mask."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.models.registry import ModelRegistry
from engine.params import GenerationParams
from engine.pipeline import DiffusersEngine


def _inpainting_file(engine: DiffusersEngine, name: str, path: Path) -> None:
    """builtin:tiny (or tiny-xl) with a random 9-channel UNet, exported as an A1111-layout single file."""
    from diffusers import UNet2DConditionModel

    from engine.models.single_file import export_single_file

    pipe = engine.load(name).pipe
    config = {k: v for k, v in dict(pipe.unet.config).items() if not k.startswith("_")}
    torch.manual_seed(5)
    unet = UNet2DConditionModel(**{**config, "in_channels": 9})
    original = pipe.unet
    pipe.unet = unet
    try:
        export_single_file(pipe, path, easel_config=name)
    finally:
        pipe.unet = original


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(("base", "size"), [("builtin:tiny", 64), ("builtin:tiny-xl", 64)])
def test_an_inpainting_checkpoint_loads_and_inpaints_keeping_the_outside(tmp_path: Path, base: str, size: int) -> None:
    models = tmp_path / "models"
    models.mkdir()
    builder = DiffusersEngine(ModelRegistry(models, tmp_path / "cache"), "cpu")
    _inpainting_file(builder, base, models / "tiny-inpainting.safetensors")
    engine = DiffusersEngine(ModelRegistry(models, tmp_path / "cache"), "cpu")
    entry = engine.registry.resolve("tiny-inpainting")
    assert entry.inpainting and entry.refused is None and entry.family_name.endswith("inpainting")
    y, x = np.mgrid[0:size, 0:size]
    picture = Image.fromarray(np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8))
    mask = Image.new("L", (size, size))
    ImageDraw.Draw(mask).rectangle((32, 0, 63, 31), fill=255)
    params = GenerationParams(
        prompt="a lighthouse", model="tiny-inpainting", seed=3, steps=4, sampler="Euler", width=size, height=size,
        init_image=engine.blobs.put(_png(picture)), mask=engine.blobs.put(_png(mask)), denoising_strength=1.0,
    )  # fmt: skip
    [raw] = engine.generate(params)
    drawn = np.asarray(raw.image)
    assert np.array_equal(drawn[44:, :20], np.asarray(picture)[44:, :20])
    assert not np.array_equal(drawn[4:24, 40:60], np.asarray(picture)[4:24, 40:60])
    assert "Conditional mask weight: 1.0" in raw.infotext
    [txt2img] = engine.generate(params.replace(init_image=None, mask=None, denoising_strength=None))
    assert txt2img.image.size == (size, size) and "Conditional mask weight: 1.0" in txt2img.infotext
