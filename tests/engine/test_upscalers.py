"""Upscaler models: read without running a pickle, detected from their tensors, and run exactly as A1111 v1.10.1
runs them (tests/reference/a1111_upscale.py), on tiny random networks of each architecture and key layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from engine.errors import InvalidParamsError
from engine.upscalers.arch import load_network
from engine.upscalers.files import UpscalerLibrary, detect, file_shapes
from engine.upscalers.models import UpscalerModels, extras_upscale, hires_images, with_smaller_tiles
from engine.upscalers.run import ModelUpscaler, resize_to, upscale
from tests.engine.upscaler_files import compact_reference, esrgan_reference, save
from tests.reference import a1111_upscale as a1111


def _picture(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour with some noise: what a generated picture looks like to an upscaler."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height) + 64], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


class _Reference(nn.Module):
    """A reference network as A1111 holds it (its first parameter gives device and dtype)."""

    def __init__(self, net: nn.Module, shuffle: int = 1) -> None:
        super().__init__()
        self.net, self.shuffle = net, shuffle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(F.pixel_unshuffle(x, self.shuffle) if self.shuffle > 1 else x)


# name -> (reference network, how it is saved, pixel-unshuffle of the reference)
MODELS = {
    "old layout .pth (4x-UltraSharp)": (lambda: esrgan_reference(seed=1), "x.pth", {"layout": "old"}, 1),
    "old layout .safetensors": (lambda: esrgan_reference(seed=2), "x.safetensors", {"layout": "old"}, 1),
    "new layout params_ema .pth (R-ESRGAN 4x+)": (
        lambda: esrgan_reference(seed=3, blocks=2), "x.pth", {"layout": "new", "wrap": "params_ema"}, 1,
    ),
    "new layout x2 pixel-unshuffle (R-ESRGAN 2x+)": (
        lambda: esrgan_reference(seed=4, scale=2, shuffle=2), "x.pth", {"layout": "new", "wrap": "params_ema"}, 2,
    ),
    "old layout x2 legacy .pth": (lambda: esrgan_reference(seed=5, scale=2), "x.pth", {"legacy": True}, 1),
    "compact .pth (General 4xV3)": (lambda: compact_reference(seed=6), "x.pth", {"wrap": "params"}, 1),
    "compact x2 .safetensors": (lambda: compact_reference(seed=7, scale=2), "x.safetensors", {}, 1),
}  # fmt: skip
CASES = [(64, 48, 2.0), (300, 220, 2.0), (257, 131, 2.0), (257, 131, 3.0), (300, 220, 4.0), (64, 48, 1.5)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_upscales_to_a1111s_bytes(name: str, tmp_path: Path) -> None:
    build, filename, how, shuffle = MODELS[name]
    reference = build()
    path = save(reference, tmp_path / filename, **how)
    network, _ = load_network(path)
    mine = ModelUpscaler(network, torch.device("cpu"))
    theirs = a1111.Upscaler("model", _Reference(reference, shuffle))
    for width, height, scale in CASES:
        image = _picture(width, height)
        ours = upscale(image, scale, mine.upscale_once)
        expected = theirs.upscale(image, scale)
        assert ours.size == expected.size == (int(width * scale) // 8 * 8, int(height * scale) // 8 * 8)
        assert np.array_equal(np.asarray(ours), np.asarray(expected)), (width, height, scale)


@pytest.mark.parametrize("name", ["Lanczos", "Nearest", "None"])
def test_the_plain_upscalers_resize_as_a1111(name: str) -> None:
    for width, height, scale in CASES:
        image = _picture(width, height, seed=3)
        target = (int(width * scale) // 8 * 8 + 8, int(height * scale) // 8 * 8)
        ours = resize_to(image, *target, name)
        expected = a1111.resize_image(image, *target, a1111.Upscaler(name))
        assert np.array_equal(np.asarray(ours), np.asarray(expected)), (width, height, scale)


@pytest.mark.parametrize("name", ["Lanczos", "Nearest", "None", "model"])
def test_the_hires_pass_image_path_is_a1111s(name: str, tmp_path: Path) -> None:
    """Decoded pixels -> 8-bit (truncated) -> upscaler -> float / 255, for a batch of two."""
    decoded = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(5)) * 2.2 - 1.1
    pixels = ((decoded + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)  # what engine.denoise.decode hands back
    reference = compact_reference(seed=8)
    library = UpscalerLibrary([tmp_path])
    if name == "model":
        save(reference, tmp_path / "4x-Tiny.pth")
        library.refresh()
        name = "4x-Tiny"
    ours = hires_images(pixels, 112, 80, name, UpscalerModels(library, "cpu"))
    upscaler = a1111.Upscaler(name, _Reference(reference) if name == "4x-Tiny" else None)
    expected = a1111.hires_pixels(decoded, 112, 80, upscaler)
    assert ours.shape == (2, 3, 80, 112)
    assert torch.equal(ours, expected)


def test_extras_scale_by_gives_a1111s_size_and_bytes(tmp_path: Path) -> None:
    reference = esrgan_reference(seed=9)
    save(reference, tmp_path / "4x_foolhardy_Remacri.pth")
    models = UpscalerModels(UpscalerLibrary([tmp_path]), "cpu")
    image = _picture(257, 131)
    ours = extras_upscale(image, 2.0, "4x_foolhardy_Remacri", models)
    expected = a1111.extras_scale_by(image, a1111.Upscaler("m", _Reference(reference)), 2.0)
    assert ours.size == (512, 256)  # each side cut down to a multiple of 8, as Extras does
    assert np.array_equal(np.asarray(ours), np.asarray(expected))


def test_the_library_lists_architecture_and_scale_and_finds_a1111_names(tmp_path: Path) -> None:
    save(esrgan_reference(), tmp_path / "4x-UltraSharp.pth")
    save(esrgan_reference(blocks=2), tmp_path / "RealESRGAN_x4plus_anime_6B.pth", layout="new", wrap="params_ema")
    save(esrgan_reference(scale=2, shuffle=2), tmp_path / "RealESRGAN_x2plus.pth", layout="new", wrap="params_ema")
    save(compact_reference(), tmp_path / "realesr-general-x4v3.pth", wrap="params")
    library = UpscalerLibrary([tmp_path])
    labels = {f.name: f.label for f in library.entries()}
    assert labels == {
        "4x-UltraSharp": "ESRGAN ×4",
        "RealESRGAN_x4plus_anime_6B": "ESRGAN ×4",
        "RealESRGAN_x2plus": "ESRGAN ×2",
        "realesr-general-x4v3": "Real-ESRGAN Compact ×4",
    }
    assert library.resolve("R-ESRGAN 4x+ Anime6B").name == "RealESRGAN_x4plus_anime_6B"
    assert library.resolve("R-ESRGAN General 4xV3").name == "realesr-general-x4v3"
    assert library.resolve("4X-ULTRASHARP").name == "4x-UltraSharp"
    with pytest.raises(InvalidParamsError, match=r"Unknown upscaler 'UltraSharp'\. Closest: 4x-UltraSharp"):
        library.resolve("UltraSharp")


class _Plant:
    """A pickle that would create a file when loaded."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.target), "w"))


def test_a_pth_that_would_run_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "ESRGAN"
    folder.mkdir()
    planted = tmp_path / "planted.txt"
    state = esrgan_reference().state_dict()
    torch.save({"params": dict(state), "extra": _Plant(planted)}, folder / "4x-Evil.pth")
    with (folder / "4x-Legacy-Evil.pth").open("wb") as fh:  # a bare pickle, not even a torch file
        pickle.dump(_Plant(planted), fh)
    library = UpscalerLibrary([folder])
    refused = {f.name: f.refused for f in library.entries()}
    assert refused["4x-Evil"] == "refused to unpickle: Global 'io.open' is forbidden"
    assert refused["4x-Legacy-Evil"] is not None and "forbidden" in refused["4x-Legacy-Evil"]
    with pytest.raises(ValueError, match="forbidden"):
        load_network(folder / "4x-Evil.pth")
    with pytest.raises(InvalidParamsError, match="refused: refused to unpickle"):
        library.resolve("4x-Evil")
    assert not planted.exists()


def test_files_that_are_no_upscaler_are_listed_as_refused_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "4x-Script.pt").write_bytes(b"PK\x03\x04 torchscript")
    save_file({"lora_unet_down.alpha": torch.ones(1)}, str(tmp_path / "a-lora.safetensors"))
    save_file({"layers.0.residual_group.blocks.0.attn.relative_position_bias_table": torch.ones(2, 2)},
              str(tmp_path / "SwinIR_4x.safetensors"))  # fmt: skip
    save(esrgan_reference(), tmp_path / "half.safetensors")
    whole = (tmp_path / "half.safetensors").read_bytes()
    (tmp_path / "half.safetensors").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "garbage.pth").write_bytes(b"\x00" * 64)
    refused = {f.name: f.refused for f in UpscalerLibrary([tmp_path]).entries()}
    assert "TorchScript" in str(refused["4x-Script"])
    assert refused["a-lora"] == (
        "not an upscaler Easel knows: no ESRGAN or Real-ESRGAN Compact weights (other kinds need spandrel, which is "
        "not installed here)"
    )
    assert "a SwinIR model: Easel runs it through spandrel" in str(refused["SwinIR_4x"])
    assert "damaged or incomplete download" in str(refused["half"])
    assert str(refused["garbage"]).startswith("refused to unpickle")


def test_detection_reads_blocks_filters_and_scale_of_an_8x_old_layout_file(tmp_path: Path) -> None:
    path = save(esrgan_reference(scale=8, blocks=3, filters=16, growth=8), tmp_path / "8x_NMKD-Superscale.pth")
    found = detect(file_shapes(path))
    assert (found.name, found.scale, found.get("blocks"), found.get("filters"), found.get("growth")) == (
        "ESRGAN", 8, 3, 16, 8,
    )  # fmt: skip


def test_a_tile_that_runs_out_of_memory_is_retried_smaller() -> None:
    calls: list[int] = []

    def network(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[-1])
        if x.shape[-1] > 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return F.interpolate(x, scale_factor=2, mode="nearest")

    model = ModelUpscaler(network, torch.device("cpu"))
    image = _picture(150, 100)
    out = with_smaller_tiles(lambda m: upscale(image, 2.0, m.upscale_once), model)
    assert out.size == (296, 200) and model.tile == 48 and calls[:2] == [192, 96]


def test_an_upscale_request_refuses_a_latent_mode_and_a_refused_file_before_queueing(tmp_path: Path) -> None:
    from engine.catalog import ExtraNetworks
    from engine.embeddings import EmbeddingDB
    from engine.loras import LoraLibrary
    from engine.models.registry import ModelRegistry
    from engine.params import Limits
    from engine.request import Catalog, Request, UpscaleAsk, resolve

    (tmp_path / "ESRGAN").mkdir()
    (tmp_path / "ESRGAN" / "RealESRGAN_x4plus.pt").write_bytes(b"PK torchscript")
    registry = ModelRegistry(tmp_path / "models", tmp_path / "cache")
    networks = ExtraNetworks(
        LoraLibrary([], registry.hashes), EmbeddingDB([]), upscalers=UpscalerLibrary([tmp_path / "ESRGAN"])
    )
    catalog = Catalog(registry, networks)

    def ask(name: str) -> Request:
        return Request(init_image="a" * 64, init_size=(80, 48), upscale=UpscaleAsk(name, 2))

    with pytest.raises(InvalidParamsError, match="inside hires fix only"):
        resolve(ask("Latent"), catalog, Limits())
    with pytest.raises(InvalidParamsError, match="TorchScript"):
        resolve(ask("R-ESRGAN 4x+"), catalog, Limits())
    assert resolve(ask("Lanczos"), catalog, Limits()).params.extras_size() == (160, 96)
    networks.close()
