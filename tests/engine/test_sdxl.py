"""SDXL on builtin:tiny-xl (an A1111-layout single file built offline): loading both ways, conditioning against the
A1111/sgm reference, v-prediction and zero terminal SNR, every sampler, hires and img2img, the VAE fallback and the
VAE folder, SDXL LoRAs and embeddings, per-model defaults and the memory policy."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.autoencoders.vae import DecoderOutput
from PIL import Image
from safetensors.torch import load_file, save_file

import tests.reference.a1111_sdxl_conditioning as _ref
from engine.embeddings import EmbeddingDB
from engine.errors import InvalidParamsError
from engine.infotext import parse_infotext
from engine.ksampling import Denoiser
from engine.loras import LoraLibrary
from engine.models import builtin
from engine.models.loader import LoadedModel
from engine.models.registry import ModelRegistry
from engine.models.single_file import _unet_map, _vae_map, read_header
from engine.params import GenerationParams, Limits, build_params
from engine.pipeline import DiffusersEngine
from engine.samplers import SCHEDULES, sampler_names
from engine.vaes import VaeLibrary

ref: Any = _ref
XL = "builtin:tiny-xl"
TE2_HEADS = 4  # builtin:tiny-xl's OpenCLIP-G: 48 wide, 4 heads


def xl_params(**changes: object) -> GenerationParams:
    base = GenerationParams(
        prompt="a lighthouse at dusk", model=XL, seed=42, steps=4, sampler="Euler", width=64, height=64
    )
    return base.replace(**changes)


def pixels(engine: DiffusersEngine, **changes: object) -> np.ndarray:
    return np.asarray(engine.generate(xl_params(**changes))[0].image).astype(np.int16)


@pytest.fixture(scope="module")
def xl(engine: DiffusersEngine) -> LoadedModel:
    return engine.load(XL)


@pytest.fixture(scope="module")
def xl_file(engine: DiffusersEngine, xl: LoadedModel) -> Path:
    return engine.registry.cache_dir / "builtin" / builtin.TINY_XL_VERSION / builtin.TINY_XL_FILE


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def registry_of(models: Path, engine: DiffusersEngine) -> ModelRegistry:
    return ModelRegistry(models, engine.registry.cache_dir)


# Loading (§1): single file and diffusers folder, offline; detection from the keys


def test_the_single_file_and_the_diffusers_folder_give_bit_identical_images(
    engine: DiffusersEngine, xl_file: Path, models: Path
) -> None:
    shutil.copytree(xl_file.parent, models / "tiny-xl-folder", ignore=shutil.ignore_patterns("*.safetensors_"))
    (models / "tiny-xl-folder" / builtin.TINY_XL_FILE).unlink()
    registry = registry_of(models, engine)
    assert registry.resolve("tiny-xl-folder").family == "sdxl"
    folder_engine = DiffusersEngine(registry, "cpu")
    assert np.array_equal(pixels(folder_engine, model="tiny-xl-folder"), pixels(engine))


def test_a_copied_single_file_is_found_as_sdxl_by_its_keys(
    engine: DiffusersEngine, xl_file: Path, models: Path
) -> None:
    shutil.copy(xl_file, models / "whatever-name.safetensors")
    entry = registry_of(models, engine).resolve("whatever-name")
    assert (entry.kind, entry.family, entry.prediction, entry.context_width) == ("single-file", "sdxl", "epsilon", 80)


def test_refused_families_are_listed_with_the_family_and_the_reason(engine: DiffusersEngine, models: Path) -> None:
    save_file({"conditioner.embedders.0.model.ln_final.weight": torch.zeros(4)}, str(models / "refiner.safetensors"))
    sd3 = {"joint_blocks.0.context_block.adaLN_modulation.1.bias": torch.zeros(4)}
    save_file(sd3, str(models / "sd35.safetensors"))
    refused = {e.name: e.refused for e in registry_of(models, engine).refused()}
    assert refused["refiner"] is not None and refused["refiner"].startswith("SDXL refiner checkpoint")
    assert refused["sd35"] is not None and refused["sd35"].startswith("SD 3/3.5 checkpoint: Easel does not run SD 3")


def test_an_sdxl_model_defaults_to_1024_and_an_owner_can_set_its_own(
    engine: DiffusersEngine, xl_file: Path, models: Path
) -> None:
    shutil.copy(xl_file, models / "plain.safetensors")
    shutil.copy(xl_file, models / "owned.safetensors")
    (models / "owned.easel.json").write_text('{"width": 832, "height": 1216, "steps": 28, "cfg_scale": 5.5}')
    registry = registry_of(models, engine)
    plain, owned = registry.defaults_for("plain"), registry.defaults_for("owned")
    assert (plain.width, plain.height) == (1024, 1024)
    assert (owned.width, owned.height, owned.steps, owned.cfg_scale) == (832, 1216, 28, 5.5)


# Conditioning (§2) against the reference written from A1111's and sgm's code


@pytest.fixture(scope="module")
def reference(xl: LoadedModel, xl_file: Path) -> Any:
    pipe, state = xl.pipe, load_file(str(xl_file))
    clip_l = ref.CustomWordsEncoder(pipe.tokenizer, ref.clip_l_encoder(pipe.text_encoder), pipe.tokenizer.eos_token_id)
    clip_l.embedding_key = "clip_l"
    clip_g = ref.CustomWordsEncoder(pipe.tokenizer_2, ref.open_clip_g_encoder(state, TE2_HEADS), 0)
    clip_g.embedding_key = "clip_g"
    return ref.SDXLConditioner(clip_l, clip_g, size_dim=8)


def easel_conditioning(xl: LoadedModel, texts: list[str], width: int, height: int, negative: bool = False) -> Any:
    conds = xl.family.encode_schedule(texts, 1, "", negative=negative)
    time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)
    sizes = xl.pipe.unet.add_time_proj(time_ids.flatten()).reshape(1, -1)
    assert all(c.vector is not None for c in conds)
    crossattn = torch.cat([c.crossattn for c in conds])
    vector = torch.cat([torch.cat([c.vector, sizes], dim=1) for c in conds if c.vector is not None])
    return crossattn, vector


CONDITIONING_CASES = {
    "plain": ["a lighthouse at dusk"],
    "emphasis": ["a (lighthouse:1.3) at [dusk]"],
    "chunks and comma backtrack": [", ".join(["a red house by the sea"] * 16)],
    "break": ["a cat BREAK a dog"],
    "prompt editing batch": ["a cat", "a (dog:1.4)"],
    "batch of different lengths": ["x " * 80, "y"],
}


@pytest.mark.parametrize("texts", CONDITIONING_CASES.values(), ids=list(CONDITIONING_CASES))
def test_the_conditioning_equals_a1111s(xl: LoadedModel, reference: Any, texts: list[str]) -> None:
    expected_crossattn, expected_vector = reference(texts, 64, 96)
    crossattn, vector = easel_conditioning(xl, texts, 64, 96)
    assert torch.equal(crossattn, expected_crossattn)  # both encoders run the same modules the same way
    torch.testing.assert_close(vector, expected_vector, atol=1e-6, rtol=0)  # OpenCLIP's projection, as a matmul


def test_an_empty_negative_prompt_is_zeros_but_the_sizes_stay(xl: LoadedModel, reference: Any) -> None:
    expected_crossattn, expected_vector = reference([""], 64, 64, is_negative_prompt=True)
    crossattn, vector = easel_conditioning(xl, [""], 64, 64, negative=True)
    assert (
        torch.equal(crossattn, expected_crossattn)
        and not crossattn.any()
        and not vector[:, :48].any()
        and vector[:, 48:].any()
    )
    torch.testing.assert_close(vector, expected_vector, atol=1e-6, rtol=0)


def test_an_empty_positive_prompt_is_not_zeroed(xl: LoadedModel) -> None:
    [cond] = xl.family.encode_schedule([""], 1, "", negative=False)
    assert cond.crossattn.any()


def test_the_size_conditioning_is_the_passs_size(engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    family = engine.load(XL).family
    sizes: list[tuple[int, int]] = []
    real = family.unet_fn

    def spy(width: int, height: int, **kwargs: Any) -> Any:
        sizes.append((width, height))
        return real(width, height, **kwargs)

    monkeypatch.setattr(family, "unet_fn", spy)
    engine.generate(xl_params(width=64, height=96, enable_hr=True, hr_scale=2.0, denoising_strength=0.5))
    assert sizes == [(64, 96), (128, 192)]


def test_the_hires_pass_conditions_on_its_own_size(engine: DiffusersEngine) -> None:
    # The size conditioning is part of the image: the same pass at another size conditioning draws differently.
    hires = pixels(engine, enable_hr=True, hr_scale=2.0, denoising_strength=0.5)
    assert hires.shape == (128, 128, 3)


def test_clip_skip_is_recorded_but_changes_nothing_on_sdxl(engine: DiffusersEngine) -> None:
    [skipped] = engine.generate(xl_params(clip_skip=2))
    assert np.array_equal(np.asarray(skipped.image).astype(np.int16), pixels(engine))
    assert parse_infotext(skipped.infotext)["Clip skip"] == "2"


def test_prompt_editing_alternation_and_and_change_the_image(engine: DiffusersEngine) -> None:
    base = pixels(engine)
    for prompt in ("a [lighthouse:castle:0.5] at dusk", "a [cat|dog] at dusk", "a lighthouse AND a storm"):
        assert not np.array_equal(pixels(engine, prompt=prompt), base), prompt


def test_an_sdxl_embedding_is_substituted_in_both_encoders(engine: DiffusersEngine, tmp_path: Path) -> None:
    vectors = torch.Generator().manual_seed(3)
    save_file(
        {"clip_l": torch.randn(2, 32, generator=vectors), "clip_g": torch.randn(2, 48, generator=vectors)},
        str(tmp_path / "xlstyle.safetensors"),
    )
    other = DiffusersEngine(engine.registry, "cpu", embeddings=EmbeddingDB([tmp_path]))
    [result] = other.generate(xl_params(prompt="a xlstyle lighthouse"))
    assert not np.array_equal(np.asarray(result.image).astype(np.int16), pixels(engine, prompt="a xlstyle lighthouse"))
    assert 'TI hashes: "xlstyle: ' in result.infotext


def test_an_sd1_embedding_is_refused_on_sdxl(engine: DiffusersEngine, tmp_path: Path) -> None:
    save_file({"emb_params": torch.zeros(1, 32)}, str(tmp_path / "sd1only.safetensors"))
    other = DiffusersEngine(engine.registry, "cpu", embeddings=EmbeddingDB([tmp_path]))
    with pytest.raises(InvalidParamsError, match=r"sd1only.*SD 1\.x embedding"):
        other.generate(xl_params(prompt="a sd1only lighthouse"))


# Sampling (§3): every sampler, v-prediction and zero terminal SNR, seeds, hires, img2img


@pytest.mark.parametrize("sampler", sampler_names())
def test_every_sampler_runs_on_sdxl(engine: DiffusersEngine, sampler: str) -> None:
    [result] = engine.generate(xl_params(sampler=sampler, steps=3))
    assert result.image.size == (64, 64) and f"Sampler: {sampler}," in result.infotext


@pytest.fixture
def vpred_models(models: Path, xl_file: Path) -> Path:
    state = load_file(str(xl_file))
    metadata = read_header(xl_file)["__metadata__"]  # the Easel config it names: a tiny model needs its own
    marked = {**state, "v_pred": torch.tensor([]), "ztsnr": torch.tensor([])}
    save_file(marked, str(models / "noob-vpred.safetensors"), metadata=metadata)
    shutil.copy(xl_file, models / "noob-sidecar.safetensors")
    (models / "noob-sidecar.easel.json").write_text('{"prediction": "v_prediction", "ztsnr": true}')
    return models


def test_v_prediction_and_ztsnr_are_detected_and_sampled_on_the_rescaled_schedule(
    engine: DiffusersEngine, vpred_models: Path
) -> None:
    registry = registry_of(vpred_models, engine)
    entry = registry.resolve("noob-vpred")
    assert (entry.prediction, entry.ztsnr) == ("v_prediction", True)
    vpred = DiffusersEngine(registry, "cpu")
    config = vpred.load("noob-vpred").scheduler_config
    assert config["prediction_type"] == "v_prediction" and config["rescale_betas_zero_snr"]
    denoiser = Denoiser.from_scheduler_config(lambda x, t: x, config)
    assert denoiser.prediction_type == "v_prediction" and 4000 < denoiser.sigma_max < 5000  # A1111's 4.9e-8 alpha
    for sampler in ("Euler a", "DDIM", "UniPC"):
        assert not np.array_equal(pixels(vpred, model="noob-vpred", sampler=sampler), pixels(engine, sampler=sampler))


def test_a_settings_file_gives_v_prediction_to_a_file_without_the_keys(
    engine: DiffusersEngine, vpred_models: Path
) -> None:
    vpred = DiffusersEngine(registry_of(vpred_models, engine), "cpu")
    assert np.array_equal(pixels(vpred, model="noob-sidecar"), pixels(vpred, model="noob-vpred"))


def test_seeds_variation_resize_and_rng_sources_work_on_sdxl(engine: DiffusersEngine) -> None:
    base = pixels(engine)
    assert np.array_equal(base, pixels(engine))
    for changes in ({"seed": 43}, {"subseed": 7, "subseed_strength": 0.3}, {"seed_resize_from_w": 48,
                    "seed_resize_from_h": 80}, {"rng": "CPU"}):  # fmt: skip
        assert not np.array_equal(pixels(engine, **changes), base), changes
    batch = engine.generate(xl_params(batch_size=2))
    assert [r.seed for r in batch] == [42, 43]


def test_img2img_on_sdxl_keeps_the_image_at_low_strength(engine: DiffusersEngine) -> None:
    y, x = np.mgrid[0:64, 0:64]
    array = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    digest = engine.blobs.put(buffer.getvalue())
    kept = pixels(engine, init_image=digest, denoising_strength=0.0)  # the init image through the tiny VAE
    low = pixels(engine, init_image=digest, denoising_strength=0.05)
    high = pixels(engine, init_image=digest, denoising_strength=1.0)
    assert np.abs(low - kept).mean() < np.abs(high - kept).mean()


# VAE (§4): the NaN fallback and the VAE folder


def test_a_vae_that_gives_nan_in_half_precision_is_decoded_again_in_float32(
    engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = pixels(engine)
    vae = engine.load(XL).pipe.vae
    real_decode = vae.decode

    def overflowing(latents: torch.Tensor, **kwargs: Any) -> Any:
        if vae.dtype != torch.float32:  # what SDXL's VAE does in fp16: activations overflow to inf, then NaN
            batch, _, height, width = latents.shape
            return DecoderOutput(sample=torch.full((batch, 3, height * 8, width * 8), float("nan")))
        return real_decode(latents, **kwargs)

    monkeypatch.setattr(vae, "decode", overflowing)
    vae.to(torch.bfloat16)
    try:
        result = pixels(engine)
        assert vae.dtype == torch.float32  # kept in float32 from then on, as A1111 does
        # The image, not a black square; up to the weights' round trip through bfloat16.
        assert np.abs(result - expected).mean() < 1.0 and result.std() > 10
    finally:
        vae.to(torch.float32)


def export_vae(pipe: Any, path: Path, seed: int) -> None:
    """The model's VAE with perturbed weights, in A1111's layout (`encoder.down.0.block.0...`)."""
    generator = torch.Generator().manual_seed(seed)
    state = pipe.vae.state_dict()
    out = {}
    for hf, sd in _vae_map(dict(pipe.vae.config), list(state)).items():
        tensor = state[hf] + 0.05 * torch.randn(state[hf].shape, generator=generator)
        if "mid.attn_1." in sd and tensor.ndim == 2:
            tensor = tensor.reshape(*tensor.shape, 1, 1)
        out[sd.removeprefix("first_stage_model.")] = tensor.contiguous()
    save_file(out, str(path))


@pytest.fixture
def vae_engine(engine: DiffusersEngine, xl: LoadedModel, tmp_path: Path) -> DiffusersEngine:
    folder = tmp_path / "VAE"
    folder.mkdir()
    export_vae(xl.pipe, folder / "tiny-xl-vae.safetensors", seed=1)  # "xl" in the name: an SDXL VAE
    export_vae(xl.pipe, folder / "kl-f8-anime2.safetensors", seed=2)  # an SD 1.x VAE by its well-known name
    return DiffusersEngine(engine.registry, "cpu", vaes=VaeLibrary([folder], engine.registry.hashes))


def test_a_vae_from_the_folder_is_used_and_written_as_a1111_writes_it(vae_engine: DiffusersEngine) -> None:
    [result] = vae_engine.generate(xl_params(vae="tiny-xl-vae.safetensors"))
    assert not np.array_equal(np.asarray(result.image).astype(np.int16), pixels(vae_engine))
    fields = parse_infotext(result.infotext)
    assert fields["VAE"] == "tiny-xl-vae.safetensors"
    vae = vae_engine.vaes.resolve("tiny-xl-vae")
    assert fields["VAE hash"] == vae_engine.vaes.short_hash(vae) and len(fields["VAE hash"]) == 10


def test_a_vae_of_the_other_family_is_refused(vae_engine: DiffusersEngine) -> None:
    with pytest.raises(InvalidParamsError, match=r"kl-f8-anime2.*SD 1\.x models, and this model is SDXL"):
        vae_engine.generate(xl_params(vae="kl-f8-anime2"))
    with pytest.raises(InvalidParamsError, match=r"tiny-xl-vae.*SDXL models, and this model is SD 1\.x"):
        vae_engine.generate(xl_params(model="builtin:tiny", vae="tiny-xl-vae"))


# LoRA (§5): kohya (te1/te2, SGM-named UNet blocks, LoCon) and diffusers/peft files


def sdxl_loras(pipe: Any, folder: Path) -> None:
    """The same matrices as a kohya file and a peft file, a LoCon (a conv layer too), and an SD 1.x one."""
    generator = torch.Generator().manual_seed(3)
    unet_modules = dict(pipe.unet.named_modules())
    targets = [
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
        "up_blocks.0.attentions.1.transformer_blocks.1.attn2.to_v",
    ]
    conv = "down_blocks.0.resnets.0.conv1"
    sgm = _unet_map(dict(pipe.unet.config), [t + ".weight" for t in [*targets, conv]])

    def kohya_name(target: str) -> str:
        return "lora_unet_" + sgm[target + ".weight"].removeprefix("model.diffusion_model.").removesuffix(".weight")

    kohya: dict[str, torch.Tensor] = {}
    peft: dict[str, torch.Tensor] = {}

    def add(kohya_key: str, peft_key: str, down: torch.Tensor, up: torch.Tensor) -> None:
        key = kohya_key.replace(".", "_")
        kohya.update({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(4.0)})
        peft.update({f"{peft_key}.lora_A.weight": down, f"{peft_key}.lora_B.weight": up})

    for target in targets:
        module = unet_modules[target]
        down = torch.randn(4, module.in_features, generator=generator) * 0.3
        add(kohya_name(target), "unet." + target, down, torch.randn(module.out_features, 4, generator=generator) * 0.3)
    for prefix, encoder in (("te1", pipe.text_encoder), ("te2", pipe.text_encoder_2)):
        modules = dict(encoder.named_modules())
        # diffusers tells a kohya text-encoder LoRA by its out_proj matrices: real ones always train them.
        for proj in ("q_proj", "out_proj"):
            name = next(n for n in modules if n.endswith(f"layers.0.self_attn.{proj}"))
            full = name if name.startswith("text_model.") else "text_model." + name
            layer = modules[name]
            down = torch.randn(4, layer.in_features, generator=generator) * 0.3
            up = torch.randn(layer.out_features, 4, generator=generator) * 0.3
            add(f"lora_{prefix}_{full}", f"text_encoder{'_2' if prefix == 'te2' else ''}.{full}", down, up)
    save_file(kohya, str(folder / "xl-kohya.safetensors"))
    save_file(peft, str(folder / "xl-peft.safetensors"))
    module = unet_modules[conv]
    locon = dict(kohya)
    key = kohya_name(conv).replace(".", "_")
    locon[f"{key}.lora_down.weight"] = torch.randn(4, module.in_channels, 3, 3, generator=generator) * 0.3
    locon[f"{key}.lora_up.weight"] = torch.randn(module.out_channels, 4, 1, 1, generator=generator) * 0.3
    locon[f"{key}.alpha"] = torch.tensor(4.0)
    save_file(locon, str(folder / "xl-locon.safetensors"))
    save_file(
        {
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4),
        },
        str(folder / "sd15-style.safetensors"),
        metadata={"ss_base_model_version": "sd_v1"},
    )


@pytest.fixture(scope="module")
def lora_engine(engine: DiffusersEngine, xl: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("xl-loras")
    sdxl_loras(xl.pipe, folder)
    yield DiffusersEngine(engine.registry, "cpu", loras=LoraLibrary.with_builtins([folder], engine.registry.hashes))


def test_an_sdxl_lora_of_either_format_gives_the_same_image(lora_engine: DiffusersEngine) -> None:
    base = pixels(lora_engine)
    kohya = pixels(lora_engine, prompt="a lighthouse at dusk <lora:xl-kohya:1>")
    assert not np.array_equal(kohya, base)
    assert np.array_equal(kohya, pixels(lora_engine, prompt="a lighthouse at dusk <lora:xl-peft:1>"))
    assert np.array_equal(pixels(lora_engine), base)  # unloaded again: the base model exactly


def test_a_locon_also_patches_the_convolutions(lora_engine: DiffusersEngine) -> None:
    kohya = pixels(lora_engine, prompt="a lighthouse at dusk <lora:xl-kohya:1>")
    assert not np.array_equal(pixels(lora_engine, prompt="a lighthouse at dusk <lora:xl-locon:1>"), kohya)


def test_lora_families_are_read_from_the_files(lora_engine: DiffusersEngine) -> None:
    families = {name: lora_engine.loras.resolve(name).family for name in ("xl-kohya", "xl-peft", "sd15-style")}
    assert families == {"xl-kohya": "sdxl", "xl-peft": "sdxl", "sd15-style": "sd1"}


def test_a_lora_for_the_other_family_is_refused_naming_both(lora_engine: DiffusersEngine) -> None:
    with pytest.raises(InvalidParamsError, match=r"'sd15-style' was made for SD 1\.x, and this model is SDXL"):
        lora_engine.generate(xl_params(prompt="a lighthouse <lora:sd15-style:1>"))
    with pytest.raises(InvalidParamsError, match=r"'xl-kohya' was made for SDXL, and this model is SD 1\.x"):
        lora_engine.generate(xl_params(model="builtin:tiny", prompt="a lighthouse <lora:xl-kohya:1>"))


def test_sdxl_lora_hashes_are_in_the_infotext(lora_engine: DiffusersEngine) -> None:
    [result] = lora_engine.generate(xl_params(prompt="a lighthouse <lora:xl-kohya:0.5>"))
    digest = lora_engine.loras.short_hash(lora_engine.loras.resolve("xl-kohya"))
    assert parse_infotext(result.infotext)["Lora hashes"] == f"xl-kohya: {digest}"


# Memory (§7): a switch frees the old model first when both do not fit


def test_with_room_for_one_model_the_old_one_is_freed_before_the_next_loads(
    engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = DiffusersEngine(engine.registry, "cpu", max_loaded=1)
    single.load("builtin:tiny")
    resident_at_load: list[list[str]] = []
    real = single.loader._load_pipe

    def watching(entry: Any) -> Any:
        resident_at_load.append(single.loader.loaded_names())
        return real(entry)

    monkeypatch.setattr(single.loader, "_load_pipe", watching)
    single.load(XL)
    assert resident_at_load == [[]] and single.loader.loaded_names() == [XL]


def test_a_memory_budget_keeps_only_what_fits(engine: DiffusersEngine, xl_file: Path, models: Path) -> None:
    shutil.copy(xl_file, models / "a.safetensors")
    shutil.copy(xl_file, models / "b.safetensors")
    registry = registry_of(models, engine)
    one_model = DiffusersEngine(registry, "cpu").loader.estimate_bytes(registry.resolve("a"))
    assert one_model > 20_000_000  # 6.2 M float32 weights in builtin:tiny-xl
    budgeted = DiffusersEngine(registry, "cpu", max_loaded=4, memory_budget=int(one_model * 1.5))
    budgeted.load("a")
    budgeted.load("b")
    assert budgeted.loader.loaded_names() == ["b"]


@pytest.mark.parametrize("schedule", [s.label for s in SCHEDULES])
def test_every_schedule_type_runs_on_sdxl(engine: DiffusersEngine, schedule: str) -> None:
    [result] = engine.generate(xl_params(sampler="DPM++ 2M", schedule=schedule, steps=3))
    assert result.image.size == (64, 64)


def test_align_your_steps_takes_the_sdxl_list_on_sdxl(engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.ksampling.samplers as ksamplers

    seen: list[bool] = []
    real = ksamplers.get_sigmas

    def spy(*args: Any, options: Any = None, **kwargs: Any) -> Any:
        seen.append(bool(options and options.sdxl))
        return real(*args, options=options, **kwargs)

    monkeypatch.setattr(ksamplers, "get_sigmas", spy)
    engine.generate(xl_params(sampler="DPM++ 2M", schedule="Align Your Steps", steps=3))
    engine.generate(xl_params(model="builtin:tiny", sampler="DPM++ 2M", schedule="Align Your Steps", steps=3))
    assert seen == [True, False]


def test_a_models_default_vae_comes_from_its_settings_file(
    engine: DiffusersEngine, xl_file: Path, models: Path
) -> None:
    shutil.copy(xl_file, models / "with-vae.safetensors")
    (models / "with-vae.easel.json").write_text('{"vae": "sdxl_vae.safetensors", "sampler": "Euler a"}')
    registry = registry_of(models, engine)
    defaults = registry.defaults_for("with-vae")
    params = build_params({"prompt": "x"}, model="with-vae", limits=Limits(), defaults=defaults)
    assert (params.vae, params.sampler) == ("sdxl_vae.safetensors", "Euler a")
    explicit = build_params({"prompt": "x", "vae": "None"}, model="with-vae", limits=Limits(), defaults=defaults)
    assert explicit.vae is None


def test_a_ztsnr_checkpoint_writes_its_noise_schedule_and_a_paste_for_another_model_is_told(
    engine: DiffusersEngine, vpred_models: Path
) -> None:
    from engine.request import Catalog, Request, resolve
    from tests.fakes import FakeNetworks

    registry = registry_of(vpred_models, engine)
    vpred = DiffusersEngine(registry, "cpu")
    [result] = vpred.generate(xl_params(model="noob-vpred"))
    assert ", Noise Schedule: Zero Terminal SNR," in result.infotext
    assert result.infotext.index("Noise Schedule") < result.infotext.index("Version")
    block = result.infotext.replace('Model: "noob-vpred"', "Model: noob-vpred").replace("Model: noob-vpred", "Model: x")
    catalog = Catalog(registry, FakeNetworks(), "noob-vpred")
    fine = resolve(Request(paste=result.infotext), catalog, Limits())
    assert not any("Noise Schedule" in note for note in fine.notes)
    other = resolve(Request(paste=block, model=XL), catalog, Limits())
    assert any("Noise Schedule: Zero Terminal SNR" in note for note in other.notes)
