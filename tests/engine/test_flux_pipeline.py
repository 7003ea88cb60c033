"""Flux.1 on builtin:tiny-flux (Flux.1 dev's architecture, tiny and random, installed as a civitai download is: a
transformer-only BFL file plus ae / clip_l / t5xxl files): Easel's loop against diffusers' FluxPipeline, the single
file against the separate modules, fp8 storage, schnell, CFG and the distilled CFG, img2img, hires fix, variation
seeds, the parameter text, and the refusals."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.errors import EaselError, ModelUnavailableError
from engine.families.flux import FluxFamily, pack, unpack
from engine.flux.keys import BFL_PREFIX as BFL
from engine.flux.modules import FluxModules
from engine.flux.tiny import MODULE_FILES, TINY_FLUX_FILE, build_tiny_flux
from engine.infotext import options_from_infotext, parse_infotext
from engine.ksampling import get_sigmas
from engine.ksampling.denoiser import FluxDenoiser, flux_mu
from engine.models.registry import BUILTIN_TINY_FLUX, ModelRegistry
from engine.params import GenerationParams, Limits, build_params
from engine.pipeline import DiffusersEngine
from engine.seeds import ImageRNG

FLUX = BUILTIN_TINY_FLUX


def flux_params(**changes: object) -> GenerationParams:
    base = GenerationParams(prompt="a lighthouse at dusk", model=FLUX, seed=42, steps=6, sampler="Euler",
                            schedule="Simple", cfg_scale=1.0, width=64, height=64)  # fmt: skip
    return base.replace(**changes)


def pixels(engine: DiffusersEngine, **changes: object) -> np.ndarray:
    return np.asarray(engine.generate(flux_params(**changes))[0].image).astype(np.int16)


@pytest.fixture(scope="module")
def tiny_folder(engine: DiffusersEngine) -> Path:
    return build_tiny_flux(engine.registry.cache_dir)


def engine_for(models: Path, cache: Path, modules: list[Path]) -> DiffusersEngine:
    return DiffusersEngine(ModelRegistry(models, cache), "cpu", flux_modules=FluxModules(modules))


@pytest.fixture
def installed(tmp_path: Path, tiny_folder: Path) -> dict[str, Path]:
    """An owner's folders: the transformer in models/, the ae in VAE/, clip_l and t5xxl in text_encoder/."""
    folders = {name: tmp_path / name for name in ("models", "VAE", "text_encoder")}
    for folder in folders.values():
        folder.mkdir()
    shutil.copy(tiny_folder / TINY_FLUX_FILE, folders["models"] / "flux1-tiny.safetensors")
    shutil.copy(tiny_folder / MODULE_FILES["ae"], folders["VAE"] / "ae.safetensors")
    shutil.copy(tiny_folder / MODULE_FILES["clip_l"], folders["text_encoder"] / "clip_l.safetensors")
    shutil.copy(tiny_folder / MODULE_FILES["t5xxl"], folders["text_encoder"] / "t5xxl_fp16.safetensors")
    return folders


def test_easel_draws_what_diffusers_flux_pipeline_draws_with_forges_sigmas(engine: DiffusersEngine) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    ours = engine.generate(flux_params())[0].image
    loaded = engine.load(FLUX)
    family = loaded.family
    assert isinstance(family, FluxFamily)
    (cond,) = family.encode_schedule([flux_params().prompt], 1, "", negative=False)
    noise = ImageRNG((16, 8, 8), [42], source="GPU").first()  # the 16-channel latent, seeded as Forge seeds it
    sigmas = get_sigmas("Simple", 6, FluxDenoiser(lambda x, t: x, flux_mu(schnell=False)))
    # The loaded model's parts are a diffusers FluxPipeline whose scheduler does not shift: the sigmas pass as given.
    reference = loaded.pipe
    assert isinstance(reference, FluxPipeline) and not reference.scheduler.config.use_dynamic_shifting
    assert isinstance(reference.scheduler, FlowMatchEulerDiscreteScheduler) and reference.scheduler.config.shift == 1
    out = reference(
        prompt_embeds=cond.crossattn, pooled_prompt_embeds=cond.vector, latents=pack(noise)[0],
        sigmas=sigmas[:-1].tolist(), num_inference_steps=6, guidance_scale=3.5, height=64, width=64,
        output_type="pil",
    ).images[0]  # fmt: skip
    diff = np.abs(np.asarray(ours).astype(np.int16) - np.asarray(out).astype(np.int16))
    assert diff.max() <= 1


def test_the_parameter_text_is_forges_and_pastes_back_to_the_same_job(engine: DiffusersEngine) -> None:
    result = engine.generate(flux_params(distilled_cfg_scale=4.5))[0]
    line = result.infotext.split("\n")[-1]
    assert "CFG scale: 1, Distilled CFG Scale: 4.5, Seed: 42" in line
    assert line.endswith("Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16")
    options, notes = options_from_infotext(parse_infotext(result.infotext))
    assert notes == []
    again = build_params(options, model=FLUX, limits=Limits())
    assert again == flux_params(distilled_cfg_scale=4.5)


def test_distilled_cfg_changes_a_dev_image_and_cfg_1_skips_the_negative(engine: DiffusersEngine) -> None:
    base = pixels(engine)
    assert np.abs(pixels(engine, distilled_cfg_scale=1.5) - base).max() > 0
    assert np.array_equal(pixels(engine, negative_prompt="fog"), base)  # CFG 1: Forge never runs the negative
    real = pixels(engine, cfg_scale=3.0)
    assert np.abs(real - base).max() > 0
    assert np.abs(pixels(engine, cfg_scale=3.0, negative_prompt="fog") - real).max() > 0


def test_img2img_hires_and_variation_seeds_run_on_16_channel_latents(engine: DiffusersEngine) -> None:
    import io

    base = engine.generate(flux_params())[0].image
    buffer = io.BytesIO()
    base.save(buffer, format="PNG")
    blob = engine.blobs.put(buffer.getvalue())
    moved = pixels(engine, init_image=blob, denoising_strength=0.5)
    assert moved.shape == (64, 64, 3)
    from PIL import Image

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # repaint the left half only
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    inpainted = pixels(engine, init_image=blob, mask=engine.blobs.put(buffer.getvalue()), denoising_strength=0.9)
    original = np.asarray(base).astype(np.int16)
    assert np.abs(inpainted[:, 48:] - original[:, 48:]).max() <= 1  # kept, past the mask blur (A1111's overlay)
    assert np.abs(inpainted[:, :24] - original[:, :24]).max() > 10
    hires = engine.generate(flux_params(enable_hr=True, hr_scale=1.5, denoising_strength=0.5, hr_steps=3))[0]
    assert hires.image.size == (96, 96)
    assert "Hires upscale: 1.5, Hires steps: 3, Hires upscaler: Latent, Hires CFG Scale: 1, Hires Distilled CFG " \
           "Scale: 3.5" in hires.infotext  # fmt: skip
    hires_pixels = np.asarray(hires.image).astype(np.int16)
    own = flux_params(enable_hr=True, hr_scale=1.5, denoising_strength=0.5, hr_steps=3, hr_distilled_cfg_scale=6.0)
    other = engine.generate(own)[0]
    assert "Hires Distilled CFG Scale: 6" in other.infotext
    assert np.abs(np.asarray(other.image).astype(np.int16) - hires_pixels).max() > 0  # the hires pass's own
    options, notes = options_from_infotext(parse_infotext(other.infotext))
    assert notes == [] and build_params(options, model=FLUX, limits=Limits()) == own
    varied = pixels(engine, subseed=7, subseed_strength=0.3)
    assert np.abs(varied - pixels(engine)).max() > 0
    two = np.asarray(engine.generate(flux_params(batch_size=2))[1].image).astype(np.int16)
    assert np.abs(two - pixels(engine, seed=43)).max() <= 2  # image 2 of a batch is seed + 1 (batched rounding)


def test_an_odd_latent_size_is_padded_as_forge_pads_it(engine: DiffusersEngine) -> None:
    image = engine.generate(flux_params(width=72, height=56))[0].image
    assert image.size == (72, 56)


def test_the_installed_modules_and_a_full_checkpoint_draw_what_the_builtin_draws(
    engine: DiffusersEngine, installed: dict[str, Path], tiny_folder: Path, tmp_path: Path
) -> None:
    expected = pixels(engine)
    owner = engine_for(installed["models"], engine.registry.cache_dir, [installed["VAE"], installed["text_encoder"]])
    entry = owner.registry.resolve("flux1-tiny")
    assert entry.usable and entry.family_name.startswith("Flux.1 dev (1 double + 2 single blocks, fp32")
    assert np.array_equal(pixels(owner, model="flux1-tiny"), expected)

    full: dict[str, Any] = load_file(str(tiny_folder / TINY_FLUX_FILE))
    full |= {"vae." + k: v for k, v in load_file(str(tiny_folder / MODULE_FILES["ae"])).items()}
    full |= {"text_encoders.clip_l.transformer." + k: v
             for k, v in load_file(str(tiny_folder / MODULE_FILES["clip_l"])).items()}  # fmt: skip
    full |= {"text_encoders.t5xxl.transformer." + k: v
             for k, v in load_file(str(tiny_folder / MODULE_FILES["t5xxl"])).items()}  # fmt: skip
    alone = tmp_path / "alone"
    alone.mkdir()
    save_file(full, str(alone / "flux1-full.safetensors"), metadata={"easel.num_attention_heads": "4"})
    single = engine_for(alone, engine.registry.cache_dir, [])
    assert "with its VAE and text encoders" in single.registry.resolve("flux1-full").family_name
    result = single.generate(flux_params(model="flux1-full"))[0]
    assert np.array_equal(np.asarray(result.image).astype(np.int16), expected)
    assert "Module 1" not in result.infotext  # nothing was loaded apart


def test_a_missing_or_mismatched_module_is_refused_with_the_reason(
    engine: DiffusersEngine, installed: dict[str, Path], tmp_path: Path
) -> None:
    (installed["text_encoder"] / "t5xxl_fp16.safetensors").rename(tmp_path / "t5xxl_fp16.safetensors")
    owner = engine_for(installed["models"], engine.registry.cache_dir, [installed["VAE"], installed["text_encoder"]])
    with pytest.raises(ModelUnavailableError, match=r"T5-XXL text encoder file.*t5xxl_fp16\.safetensors"):
        owner.generate(flux_params(model="flux1-tiny"))
    wider = {k: torch.cat([v, v], dim=-1) if k == "shared.weight" else v
             for k, v in load_file(str(tmp_path / "t5xxl_fp16.safetensors")).items()}  # fmt: skip
    with pytest.raises(EaselError):  # a T5 whose width is not the transformer's: its tensors do not fit
        save_file(wider, str(installed["text_encoder"] / "t5xxl_fp16.safetensors"))
        owner.generate(flux_params(model="flux1-tiny"))


def test_fp8_weights_stay_fp8_and_draw_close_to_full_precision(
    engine: DiffusersEngine, installed: dict[str, Path]
) -> None:
    path = installed["models"] / "flux1-tiny.safetensors"
    state = load_file(str(path))
    save_file({k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in state.items()}, str(path))
    owner = engine_for(installed["models"], engine.registry.cache_dir, [installed["VAE"], installed["text_encoder"]])
    assert "fp8 (e4m3fn)" in owner.registry.resolve("flux1-tiny").family_name
    image = pixels(owner, model="flux1-tiny")
    transformer = owner.load("flux1-tiny").pipe.transformer
    assert transformer.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
    assert np.abs(image - pixels(engine)).mean() < 8  # fp8 rounding of random weights, same picture
    assert np.array_equal(pixels(owner, model="flux1-tiny"), image)


def test_schnell_has_no_distilled_cfg_and_forges_shift(engine: DiffusersEngine, installed: dict[str, Path]) -> None:
    path = installed["models"] / "flux1-tiny.safetensors"
    state = {k: v for k, v in load_file(str(path)).items() if ".guidance_in." not in k}
    save_file(state, str(path))
    owner = engine_for(installed["models"], engine.registry.cache_dir, [installed["VAE"], installed["text_encoder"]])
    assert owner.registry.resolve("flux1-tiny").family_name.startswith("Flux.1 schnell")
    result = owner.generate(flux_params(model="flux1-tiny", steps=4))[0]
    assert "Distilled CFG Scale" not in result.infotext
    assert owner.load("flux1-tiny").scheduler_config["flux_mu"] == 1.0
    assert np.array_equal(
        np.asarray(result.image), np.asarray(owner.generate(flux_params(model="flux1-tiny", steps=4,
                                                                        distilled_cfg_scale=9.0))[0].image)
    )  # fmt: skip


def test_sd_timestep_samplers_are_refused_on_flux(engine: DiffusersEngine) -> None:
    with pytest.raises(EaselError, match="k-diffusion samplers"):
        engine.generate(flux_params(sampler="DDIM"))


def test_unpack_inverts_pack_at_the_models_size() -> None:
    x = torch.randn(1, 16, 8, 8)
    assert torch.equal(unpack(pack(x)[0], 8, 8), x)


@pytest.mark.parametrize(("quant", "tolerance"), [("Q8_0", 4), ("Q4_0", 40)])
def test_a_gguf_transformer_loads_quantized_and_draws_the_same_picture(
    engine: DiffusersEngine, installed: dict[str, Path], quant: str, tolerance: float
) -> None:
    from diffusers.quantizers.gguf.utils import GGUFLinear

    from engine.flux.gguf_files import write_gguf
    from engine.flux.keys import BFL_PREFIX

    path = installed["models"] / "flux1-tiny.safetensors"
    bfl = {k.removeprefix(BFL_PREFIX): v for k, v in load_file(str(path)).items()}
    path.unlink()
    write_gguf(bfl, installed["models"] / f"flux1-tiny-{quant}.gguf", quant)
    owner = engine_for(installed["models"], engine.registry.cache_dir, [installed["VAE"], installed["text_encoder"]])
    name = f"flux1-tiny-{quant}"
    assert f"GGUF {quant}" in owner.registry.resolve(name).family_name
    image = pixels(owner, model=name)
    layer = owner.load(name).pipe.transformer.transformer_blocks[0].attn.to_q
    assert isinstance(layer, GGUFLinear) and layer.weight.dtype == torch.uint8  # still quantized in memory
    assert np.abs(image - pixels(engine)).mean() < tolerance


def test_an_sd_model_and_a_flux_model_share_the_memory_budget_least_recently_used_first(
    engine: DiffusersEngine, installed: dict[str, Path]
) -> None:
    from engine.models.loader import ModelLoader

    registry = ModelRegistry(installed["models"], engine.registry.cache_dir)
    modules = FluxModules([installed["VAE"], installed["text_encoder"]])
    sizes = sum(p.stat().st_size for folder in installed.values() for p in folder.iterdir())
    loader = ModelLoader(registry, "cpu", max_loaded=4, memory_budget=sizes + 1, flux_modules=modules)
    assert loader.estimate_bytes(registry.resolve("flux1-tiny")) == sizes  # the file and the modules it loads
    loader.load("builtin:tiny")
    loader.load("flux1-tiny")
    assert loader.loaded_names() == ["flux1-tiny"]  # the SD model was freed to make room
    loader.load("builtin:tiny")
    assert "builtin:tiny" in loader.loaded_names()


# LoRAs: kohya, XLabs and diffusers/ai-toolkit files; several per prompt; on fp8 and GGUF weights too


def _kohya_reference(state: dict[str, Any]) -> dict[str, Any]:
    """diffusers' own kohya Flux converter with Flux.1's hard-coded widths set to the tiny model's: the reference."""
    import inspect

    import diffusers.loaders.lora_conversion_utils as utils

    source = inspect.getsource(utils._convert_kohya_flux_lora_to_diffusers)
    assert "dims=[3072, 3072, 3072, 12288]" in source
    namespace: dict[str, Any] = dict(vars(utils))
    exec(source.replace("3072", "64").replace("12288", "256"), namespace)
    converted: dict[str, Any] = namespace["_convert_kohya_flux_lora_to_diffusers"](dict(state))
    return converted


def _kohya_lora(rank: int = 4, seed: int = 5) -> dict[str, torch.Tensor]:
    """A kohya Flux LoRA for the tiny model: fused q/k/v, a single block's linear1, a renamed MLP layer, with alphas."""
    generator = torch.Generator().manual_seed(seed)
    layers = {  # kohya module -> (in, out)
        "lora_unet_double_blocks_0_img_attn_qkv": (64, 192),
        "lora_unet_double_blocks_0_txt_attn_qkv": (64, 192),
        "lora_unet_single_blocks_1_linear1": (64, 448),
        "lora_unet_double_blocks_0_img_mlp_0": (64, 256),
        "lora_unet_single_blocks_0_linear2": (320, 64),
    }
    state: dict[str, torch.Tensor] = {}
    for name, (fan_in, fan_out) in layers.items():
        state[name + ".lora_down.weight"] = torch.randn(rank, fan_in, generator=generator) * 0.3
        state[name + ".lora_up.weight"] = torch.randn(fan_out, rank, generator=generator) * 0.3
        state[name + ".alpha"] = torch.tensor(2.0)
    return state


@pytest.fixture
def lora_engine(engine: DiffusersEngine, installed: dict[str, Path], tmp_path: Path) -> DiffusersEngine:
    from engine.loras import LoraLibrary

    folder = tmp_path / "Lora"
    folder.mkdir()
    kohya = _kohya_lora()
    save_file(kohya, str(folder / "flux-kohya.safetensors"), metadata={"ss_base_model_version": "flux1"})
    reference = {k: v.clone().contiguous() for k, v in _kohya_reference(kohya).items()}
    save_file(reference, str(folder / "flux-diffusers.safetensors"))
    xlabs = {
        "double_blocks.0.processor.qkv_lora1.down.weight": torch.randn(4, 64) * 0.3,
        "double_blocks.0.processor.qkv_lora1.up.weight": torch.randn(192, 4) * 0.3,
        "double_blocks.0.processor.proj_lora1.down.weight": torch.randn(4, 64) * 0.3,
        "double_blocks.0.processor.proj_lora1.up.weight": torch.randn(64, 4) * 0.3,
    }
    save_file(xlabs, str(folder / "flux-xlabs.safetensors"))
    registry = ModelRegistry(installed["models"], engine.registry.cache_dir)
    loras = LoraLibrary.with_builtins([folder], registry.hashes)
    return DiffusersEngine(registry, "cpu", loras=loras,
                           flux_modules=FluxModules([installed["VAE"], installed["text_encoder"]]))  # fmt: skip


def test_a_kohya_flux_lora_draws_what_its_diffusers_conversion_draws(lora_engine: DiffusersEngine) -> None:
    base = pixels(lora_engine, model="flux1-tiny")
    kohya = lora_engine.generate(flux_params(model="flux1-tiny", prompt="a lighthouse <lora:flux-kohya:0.8>"))[0]
    ours = np.asarray(kohya.image).astype(np.int16)
    reference = pixels(lora_engine, model="flux1-tiny", prompt="a lighthouse <lora:flux-diffusers:0.8>")
    assert np.abs(ours - base).max() > 10  # the LoRA changes the picture
    assert np.abs(ours - reference).max() <= 1
    assert 'Lora hashes: "flux-kohya: ' in kohya.infotext


def test_several_flux_loras_apply_together_and_a_weight_of_0_is_the_base_model(lora_engine: DiffusersEngine) -> None:
    base = pixels(lora_engine, model="flux1-tiny", prompt="a lighthouse")
    both = pixels(lora_engine, model="flux1-tiny", prompt="a lighthouse <lora:flux-kohya:0.8> <lora:flux-xlabs:1>")
    one = pixels(lora_engine, model="flux1-tiny", prompt="a lighthouse <lora:flux-kohya:0.8>")
    assert np.abs(both - one).max() > 0
    assert np.array_equal(pixels(lora_engine, model="flux1-tiny", prompt="a lighthouse <lora:flux-xlabs:0>"), base)
    assert np.array_equal(pixels(lora_engine, model="flux1-tiny", prompt="a lighthouse"), base)  # switched off


def test_an_sd_lora_is_refused_on_a_flux_model_and_a_flux_lora_on_an_sd_model(lora_engine: DiffusersEngine) -> None:
    from engine.errors import InvalidParamsError

    sd_lora = next(name for name in lora_engine.loras.names() if not name.startswith("flux"))
    with pytest.raises(InvalidParamsError, match=rf"LoRA '{sd_lora}' (was made for SD|patches a layer this model)"):
        lora_engine.generate(flux_params(model="flux1-tiny", prompt=f"a <lora:{sd_lora}:1>"))
    with pytest.raises(InvalidParamsError, match=r"was made for Flux\.1"):
        lora_engine.generate(flux_params(model="builtin:tiny", prompt="a <lora:flux-kohya:1>", cfg_scale=7.0))


def test_a_flux_lora_applies_on_fp8_weights(lora_engine: DiffusersEngine, installed: dict[str, Path]) -> None:
    path = installed["models"] / "flux1-tiny.safetensors"
    state = load_file(str(path))
    save_file({k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in state.items()}, str(path))
    lora_engine.registry.refresh()
    base = pixels(lora_engine, model="flux1-tiny")
    with_lora = pixels(lora_engine, model="flux1-tiny", prompt="a lighthouse <lora:flux-kohya:0.8>")
    assert np.abs(with_lora - base).max() > 10


def test_a_flux_lora_applies_on_gguf_weights(lora_engine: DiffusersEngine, installed: dict[str, Path]) -> None:
    from engine.flux.gguf_files import write_gguf
    from engine.flux.keys import BFL_PREFIX

    path = installed["models"] / "flux1-tiny.safetensors"
    write_gguf({k.removeprefix(BFL_PREFIX): v for k, v in load_file(str(path)).items()},
               installed["models"] / "flux1-q8.gguf")  # fmt: skip
    lora_engine.registry.refresh()
    base = pixels(lora_engine, model="flux1-q8")
    with_lora = pixels(lora_engine, model="flux1-q8", prompt="a lighthouse <lora:flux-kohya:0.8>")
    full = pixels(lora_engine, model="flux1-tiny", prompt="a lighthouse <lora:flux-kohya:0.8>")
    assert np.abs(with_lora - base).max() > 10
    assert np.abs(with_lora - full).mean() < 4  # the same LoRA on the quantized weights


def test_previews_of_16_channel_latents_are_drawn(engine: DiffusersEngine) -> None:
    shown: list[Any] = []
    engine.generate(flux_params(), on_preview=lambda step, total, source: shown.append(source.render()))
    assert len(shown) == 6 and shown[-1].size == (64, 64)


# Flux.1 Fill: the inpainting transformer (its input also takes the masked image and the mask)


def test_the_fill_conditioning_is_laid_out_as_diffusers_flux_fill_pipeline_lays_it_out() -> None:
    from diffusers import FluxFillPipeline

    from engine.pipeline import fill_mask

    generator = torch.Generator().manual_seed(3)
    latents = torch.randn(1, 16, 6, 8, generator=generator)
    masked = torch.randn(1, 16, 6, 8, generator=generator)
    mask = (torch.rand(1, 1, 48, 64, generator=generator) > 0.5).float()
    ours = pack(torch.cat([latents, masked, fill_mask(mask)], dim=1))[0]
    packed = FluxFillPipeline._pack_latents(masked, 1, 16, 6, 8)
    blocks = mask[:, 0].view(1, 6, 8, 8, 8).permute(0, 2, 4, 1, 3).reshape(1, 64, 6, 8)
    theirs = torch.cat([FluxFillPipeline._pack_latents(latents, 1, 16, 6, 8), packed,
                        FluxFillPipeline._pack_latents(blocks, 1, 64, 6, 8)], dim=2)  # fmt: skip
    assert torch.equal(ours, theirs)


def test_a_fill_model_inpaints_and_defaults_to_guidance_30(
    engine: DiffusersEngine, installed: dict[str, Path], tiny_folder: Path
) -> None:
    import io

    from diffusers import FluxTransformer2DModel
    from PIL import Image

    from engine.flux.keys import to_bfl
    from engine.flux.tiny import TINY_TRANSFORMER

    torch.manual_seed(30)
    fill = FluxTransformer2DModel(**{**TINY_TRANSFORMER, "in_channels": 384, "out_channels": 64})
    save_file({BFL + k: v.contiguous() for k, v in to_bfl(fill.state_dict()).items()},
              str(installed["models"] / "flux1-fill-tiny.safetensors"))  # fmt: skip
    owner = engine_for(installed["models"], engine.registry.cache_dir, [installed["VAE"], installed["text_encoder"]])
    entry = owner.registry.resolve("flux1-fill-tiny")
    assert entry.inpainting and entry.family_name.startswith("Flux.1 Fill")
    assert owner.registry.defaults_for("flux1-fill-tiny").distilled_cfg_scale == 30.0
    base = owner.generate(flux_params(model="flux1-fill-tiny"))[0].image  # text to image: all of it to draw
    buffer = io.BytesIO()
    base.save(buffer, format="PNG")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    masked = io.BytesIO()
    mask.save(masked, format="PNG")
    params = flux_params(model="flux1-fill-tiny", init_image=owner.blobs.put(buffer.getvalue()),
                         mask=owner.blobs.put(masked.getvalue()), denoising_strength=1.0)  # fmt: skip
    out = np.asarray(owner.generate(params)[0].image).astype(np.int16)
    original = np.asarray(base).astype(np.int16)
    assert np.abs(out[:, 48:] - original[:, 48:]).max() <= 1 and np.abs(out[:, :24] - original[:, :24]).max() > 10


def test_a_diffusers_folder_draws_what_the_single_file_draws(engine: DiffusersEngine, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    engine.load(FLUX).pipe.save_pretrained(models / "flux-folder")
    folder = engine_for(models, engine.registry.cache_dir, [])
    assert folder.registry.resolve("flux-folder").family == "flux"
    assert np.array_equal(pixels(folder, model="flux-folder"), pixels(engine))
