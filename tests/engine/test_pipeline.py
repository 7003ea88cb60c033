"""The real diffusers path on builtin:tiny: determinism, samplers, single-file round trip, caching, cancel."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.denoise import Guidance
from engine.errors import Cancelled, ModelUnavailableError
from engine.models.registry import ModelRegistry
from engine.models.single_file import export_single_file
from engine.pipeline import DiffusersEngine
from engine.samplers import sampler_names
from tests.engine.conftest import tiny_params


def pixels(engine: DiffusersEngine, **changes: object) -> np.ndarray:
    return np.asarray(engine.generate(tiny_params(**changes))[0].image)


def test_same_seed_gives_identical_pixels(engine: DiffusersEngine) -> None:
    assert np.array_equal(pixels(engine), pixels(engine))


def test_other_seed_gives_other_pixels(engine: DiffusersEngine) -> None:
    assert not np.array_equal(pixels(engine, seed=42), pixels(engine, seed=43))


def test_batch_images_use_consecutive_seeds(engine: DiffusersEngine) -> None:
    batch = engine.generate(tiny_params(batch_size=2))
    assert [r.seed for r in batch] == [42, 43]
    assert "Seed: 43," in batch[1].infotext
    # Batched and single runs share the noise; batched matmuls may round the last bit differently.
    assert np.abs(np.asarray(batch[1].image).astype(int) - pixels(engine, seed=43)).max() <= 1


@pytest.mark.parametrize("sampler", sampler_names())
def test_every_supported_sampler_runs_and_reports_progress(engine: DiffusersEngine, sampler: str) -> None:
    steps: list[tuple[int, int]] = []
    images = engine.generate(tiny_params(sampler=sampler, steps=3), on_step=lambda i, n: steps.append((i, n)))
    assert images[0].image.size == (64, 64)
    assert steps and steps[-1][0] == steps[-1][1]
    assert f"Sampler: {sampler}," in images[0].infotext


def test_samplers_give_different_images(engine: DiffusersEngine) -> None:
    assert not np.array_equal(pixels(engine, sampler="Euler"), pixels(engine, sampler="DDIM"))


def test_variation_strength_changes_image_and_zero_strength_does_not(engine: DiffusersEngine) -> None:
    base = pixels(engine)
    assert np.array_equal(base, pixels(engine, subseed=7, subseed_strength=0.0))
    subtle = pixels(engine, subseed=7, subseed_strength=0.1)
    strong = pixels(engine, subseed=7, subseed_strength=0.9)
    assert not np.array_equal(base, subtle)
    diff_subtle = np.abs(base.astype(int) - subtle).mean()
    diff_strong = np.abs(base.astype(int) - strong).mean()
    assert diff_subtle < diff_strong


def test_infotext_names_model_seed_and_size(engine: DiffusersEngine) -> None:
    text = engine.generate(tiny_params(negative_prompt="fog"))[0].infotext
    lines = text.split("\n")
    assert lines[0] == "a lighthouse at dusk"
    assert lines[1] == "Negative prompt: fog"
    assert "Steps: 4, Sampler: Euler," in lines[2]
    assert "Seed: 42, Size: 64x64," in lines[2]
    assert "Model: builtin:tiny" in lines[2] or 'Model: "builtin:tiny"' in lines[2]


def test_switching_back_to_a_loaded_model_does_not_reload(engine: DiffusersEngine) -> None:
    first = engine.load("builtin:tiny")
    assert engine.load("builtin:tiny") is first


def test_single_file_export_loads_back_offline_with_the_same_image(
    engine: DiffusersEngine, engine_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    cache_dir = engine_dirs[1]
    pipe = engine.load("builtin:tiny").pipe
    models = tmp_path / "models"
    models.mkdir()
    export_single_file(pipe, models / "tiny-export.safetensors", easel_config="builtin:tiny")
    registry = ModelRegistry(models, cache_dir)
    other = DiffusersEngine(registry, "cpu")
    assert registry.resolve("tiny-export").kind == "single-file"
    exported = np.asarray(other.generate(tiny_params(model="tiny-export"))[0].image)
    assert np.array_equal(exported, pixels(engine))
    text = other.generate(tiny_params(model="tiny-export"))[0].infotext
    assert "Model hash: " in text and "Model: tiny-export" in text


def test_ckpt_is_listed_as_refused_and_cannot_be_used(tmp_path: Path, engine_dirs: tuple[Path, Path]) -> None:
    (tmp_path / "evil.ckpt").write_bytes(b"not really a pickle")
    registry = ModelRegistry(tmp_path, engine_dirs[1])
    [entry] = [e for e in registry.entries() if e.name == "evil"]
    assert entry.refused is not None and "pickle" in entry.refused
    with pytest.raises(ModelUnavailableError, match="pickle"):
        registry.resolve("evil")


def test_unknown_model_names_the_closest(registry: ModelRegistry) -> None:
    with pytest.raises(ModelUnavailableError, match="builtin:tiny"):
        registry.resolve("builtin:tiyn")


def test_path_traversal_is_not_a_model_name(registry: ModelRegistry) -> None:
    for name in ("../../etc/passwd", "models/../x", "/etc/passwd", "..\\x"):
        with pytest.raises(ModelUnavailableError):
            registry.resolve(name)


def test_hub_id_fails_clearly_offline(registry: ModelRegistry) -> None:
    engine = DiffusersEngine(registry, "cpu")
    with pytest.raises(ModelUnavailableError, match="hub"):
        engine.load("someone/not-a-real-model")


def test_a_non_checkpoint_safetensors_is_refused(tmp_path: Path, engine_dirs: tuple[Path, Path]) -> None:
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + b" " * 14)
    registry = ModelRegistry(tmp_path, engine_dirs[1])
    [entry] = [e for e in registry.entries() if e.name == "junk"]
    assert entry.refused


def test_diffusers_folder_in_models_dir_is_found(
    engine: DiffusersEngine, engine_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    pipe = engine.load("builtin:tiny").pipe
    pipe.save_pretrained(tmp_path / "my-model", safe_serialization=True)
    registry = ModelRegistry(tmp_path, engine_dirs[1])
    assert registry.default_model(None) == "my-model"
    other = DiffusersEngine(registry, "cpu")
    assert np.array_equal(np.asarray(other.generate(tiny_params(model="my-model"))[0].image), pixels(engine))
    shutil.rmtree(tmp_path / "my-model")


def test_cancel_mid_run_stops_before_the_end(engine: DiffusersEngine) -> None:
    seen: list[int] = []
    with pytest.raises(Cancelled):
        engine.generate(tiny_params(steps=20), on_step=lambda i, n: seen.append(i), is_cancelled=lambda: len(seen) >= 3)
    assert len(seen) == 3
    # the engine is still usable afterwards
    assert engine.generate(tiny_params())[0].image.size == (64, 64)


def test_png_is_deterministic_bytes(engine: DiffusersEngine) -> None:
    from engine.executor import encode_raw

    a = encode_raw(engine.generate(tiny_params())[0]).png
    b = encode_raw(engine.generate(tiny_params())[0]).png
    assert a == b
    assert Image.open(io.BytesIO(a)).info["parameters"].startswith("a lighthouse at dusk")


def test_ddim_makes_one_model_call_fewer_than_its_steps_as_a1111(engine: DiffusersEngine) -> None:
    calls: list[tuple[int, int]] = []
    engine.generate(tiny_params(sampler="DDIM", steps=10), on_step=lambda i, n: calls.append((i, n)))
    assert calls[-1] == (9, 9)  # A1111's grid range(0, 1000, 100) + 1 has 10 points and 9 intervals


def test_ddim_cfgpp_differs_from_ddim(engine: DiffusersEngine) -> None:
    assert not np.array_equal(pixels(engine, sampler="DDIM"), pixels(engine, sampler="DDIM CFG++"))


@pytest.mark.parametrize("sampler", ["DDIM", "PLMS", "Euler a", "DPM++ 2M", "UniPC"])
def test_img2img_runs_with_each_sampler_family(engine: DiffusersEngine, sampler: str) -> None:
    from engine.executor import encode_raw

    init = encode_raw(engine.generate(tiny_params())[0]).png
    digest = engine.blobs.put(init)
    out = engine.generate(tiny_params(sampler=sampler, init_image=digest, denoising_strength=0.5))[0]
    assert out.image.size == (64, 64) and "Denoising strength: 0.5" in out.infotext


def test_an_sd3_diffusers_folder_is_refused_and_a_flux_one_is_listed_with_the_family_named(
    tmp_path: Path, engine_dirs: tuple[Path, Path]
) -> None:
    for name, pipeline in (("sd3", "StableDiffusion3Pipeline"), ("flux", "FluxPipeline")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model_index.json").write_text(f'{{"_class_name": "{pipeline}"}}')
    registry = ModelRegistry(tmp_path, engine_dirs[1])
    entries = {e.name: e for e in registry.entries()}
    assert entries["sd3"].refused is not None and "SD 3" in entries["sd3"].refused
    assert (entries["flux"].refused, entries["flux"].family_name) == (None, "Flux.1")
    with pytest.raises(ModelUnavailableError, match="refused"):
        registry.resolve("sd3")


def test_hires_to_a_size_of_another_aspect_is_cropped_to_that_size(engine: DiffusersEngine) -> None:
    [out] = engine.generate(
        tiny_params(enable_hr=True, hr_resize_x=128, hr_resize_y=96, denoising_strength=0.5, steps=3)
    )
    assert out.image.size == (128, 96)
    assert "Hires resize: 128x96" in out.infotext and "Size: 64x64" in out.infotext


@pytest.mark.parametrize("sampler", [s for s in sampler_names() if s != "DPM adaptive"])
def test_the_plan_counts_the_model_calls_the_engine_makes(
    engine: DiffusersEngine, sampler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real_eps = Guidance.eps

    def counting(self: Guidance, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return real_eps(self, x, t)

    monkeypatch.setattr(Guidance, "eps", counting)
    for params in (
        tiny_params(sampler=sampler, steps=5),
        tiny_params(sampler=sampler, steps=6, enable_hr=True, hr_scale=1.5, denoising_strength=0.45),
    ):
        calls = 0
        engine.generate(params)
        assert calls == engine.plan(params).unet_calls, params
