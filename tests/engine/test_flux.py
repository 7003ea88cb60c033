"""Flux.1's pure parts against Forge's code (`tests/reference/forge_flux.py`) and diffusers': the sigma table and
schedules, the denoiser, T5's chunks, padding and emphasis, the BFL key mapping, the config read from shapes, the
civitai fix-ups and the parameter text's order."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import tests.reference.forge_flux as _ref
from engine.errors import EaselError, InvalidParamsError
from engine.families.flux import T5Conditioner, pack, t5_chunks, unpack
from engine.flux.keys import to_bfl, to_diffusers, transformer_config
from engine.flux.load import t5_tokenizer
from engine.flux.tiny import tiny_parts
from engine.infotext import civitai_flux_fix, options_from_infotext, parameter_line, parse_infotext
from engine.ksampling import get_sigmas
from engine.ksampling.denoiser import FluxDenoiser, flux_mu
from engine.params import GenerationParams, Limits, ModelDefaults, build_params
from engine.prompts.attention import parse_prompt_attention

ref: Any = _ref


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return t5_tokenizer(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def parts() -> dict[str, Any]:
    return tiny_parts()


# Sampling: Forge's PredictionFlux


@pytest.mark.parametrize("schnell", [False, True])
def test_the_sigma_table_is_forges(schnell: bool) -> None:
    forge = ref.PredictionFlux(mu=1.0) if schnell else ref.PredictionFlux()
    ours = FluxDenoiser(lambda x, t: x, flux_mu(schnell=schnell))
    assert ours.mu == forge.mu == (1.0 if schnell else pytest.approx(1.15))
    assert torch.equal(ours.sigmas, forge.sigmas)
    assert (ours.sigma_min, ours.sigma_max) == (float(forge.sigma_min), float(forge.sigma_max))


@pytest.mark.parametrize("steps", [1, 4, 8, 20, 28, 50])
@pytest.mark.parametrize("schnell", [False, True])
def test_simple_and_automatic_are_forges_simple_schedule(steps: int, schnell: bool) -> None:
    forge = ref.PredictionFlux(mu=1.0) if schnell else ref.PredictionFlux()
    ours = FluxDenoiser(lambda x, t: x, flux_mu(schnell=schnell))
    expected = ref.simple_scheduler(steps, None, None, forge, "cpu")
    assert torch.equal(get_sigmas("Simple", steps, ours), expected)
    assert torch.equal(get_sigmas("Automatic", steps, ours), expected)


def test_schnell_is_shifted_as_forge_shifts_it() -> None:
    sigmas = get_sigmas("Simple", 4, FluxDenoiser(lambda x, t: x, flux_mu(schnell=True)))
    assert [round(s, 3) for s in sigmas.tolist()] == [1.0, 0.891, 0.731, 0.475, 0.0]  # flux.md, measured in Forge


def test_normal_walks_sigma_linearly_as_forges_timestep_is_sigma() -> None:
    model = FluxDenoiser(lambda x, t: x, flux_mu(schnell=False))
    sigmas = get_sigmas("Normal", 4, model)
    expected = [*torch.linspace(model.sigma_max, model.sigma_min, 4).tolist(), 0.0]
    assert sigmas.tolist() == pytest.approx(expected)


def test_the_denoised_estimate_is_x_minus_velocity_times_sigma() -> None:
    x, v, sigma = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4), torch.tensor([0.9, 0.3])
    seen: list[torch.Tensor] = []

    def model_fn(x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        assert torch.equal(x_in, x)  # a flow model sees x unscaled
        return v

    out = FluxDenoiser(model_fn, 1.15)(x, sigma)
    assert torch.equal(seen[0], sigma)  # its timestep is sigma
    assert torch.equal(out, ref.PredictionFlux().calculate_denoised(sigma, v, x))


def test_latents_pack_into_two_by_two_tokens_and_back() -> None:
    x = torch.randn(2, 16, 6, 8)
    tokens, ids = pack(x)
    assert tokens.shape == (2, 12, 64) and ids.shape == (12, 3)
    assert ids[5].tolist() == [0.0, 1.0, 1.0]  # row-major (0, row, column)
    assert torch.equal(tokens[0, 0], x[0, :, :2, :2].reshape(-1))  # (c ph pw), as BFL's rearrange
    assert torch.equal(unpack(tokens, 6, 8), x)


def test_odd_latents_are_padded_circularly_and_cropped_back() -> None:
    x = torch.randn(1, 16, 5, 7)
    tokens, _ = pack(x)
    assert tokens.shape == (1, 12, 64)
    assert torch.equal(unpack(tokens, 5, 7), x)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1), mode="circular")
    assert torch.equal(tokens[0, -1], padded[0, :, 4:6, 6:8].reshape(-1))


# Text: T5 as Forge's T5TextProcessingEngine


PROMPTS = [
    "a cat",
    "",
    "(masterpiece:1.2),(best quality), a [red] cat",
    "a cat BREAK a dog BREAK",
    "a \\(cat\\) with emoji 🐱 and 猫 <lora:x:1>",
    ", ".join(f"word{i}" for i in range(150)),  # 300+ tokens: one long chunk, never cut
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_t5_tokens_multipliers_and_padding_are_forges(tokenizer: Any, prompt: str) -> None:
    forge = ref.T5TextProcessingEngine(tokenizer, parse_prompt_attention).padded_chunks(prompt)
    ours = t5_chunks(tokenizer, prompt)
    assert [t for t, _ in ours] == [c.tokens for c in forge]
    assert [m for _, m in ours] == [c.multipliers for c in forge]
    assert all(len(t) >= 256 for t, _ in ours)


def test_a_long_prompt_is_one_chunk_longer_than_256(tokenizer: Any) -> None:
    ((tokens, _),) = t5_chunks(tokenizer, PROMPTS[-1])
    assert len(tokens) > 300 and tokens[-1] == 1 and 0 not in tokens


def test_each_emphasis_piece_is_tokenized_on_its_own(tokenizer: Any) -> None:
    ((tokens, multipliers),) = t5_chunks(tokenizer, "(masterpiece:1.2),(best quality)")
    words = tokenizer.convert_ids_to_tokens(tokens[:6])
    assert words[:3] == ["▁masterpiece", "▁", ","]  # "," alone starts with its own ▁ marker (flux.md, Forge)
    assert multipliers[:3] == [1.2, 1.0, 1.0]


def test_t5_encoding_with_emphasis_is_forges(tokenizer: Any, parts: dict[str, Any]) -> None:
    encoder = parts["text_encoder_2"].eval()
    prompt = "a (red:1.3) lighthouse, [dusk]"
    engine = ref.T5TextProcessingEngine(tokenizer, parse_prompt_attention)
    (chunk,) = engine.padded_chunks(prompt)
    with torch.no_grad():
        expected = engine.process_tokens(encoder, [chunk.tokens], [chunk.multipliers])
    ours = T5Conditioner(tokenizer, encoder, "cpu").encode(prompt)
    assert ours.shape == (1, 256, 32)
    assert torch.allclose(ours, expected, atol=1e-6)


def test_break_chunks_are_joined_along_the_sequence(tokenizer: Any, parts: dict[str, Any]) -> None:
    encoder = parts["text_encoder_2"].eval()
    conditioner = T5Conditioner(tokenizer, encoder, "cpu")
    joined = conditioner.encode("a cat BREAK a dog")
    assert joined.shape == (1, 512, 32)
    assert torch.equal(joined[:, :256], conditioner.encode("a cat"))
    assert torch.equal(joined[:, 256:], conditioner.encode("a dog"))


# Loading: the BFL layout by shapes


def _diffusers_converter(width: int) -> Any:
    """diffusers' own BFL converter with its hard-coded width (3072) set to `width`: the reference mapping."""
    import diffusers.loaders.single_file_utils as utils

    source = inspect.getsource(utils.convert_flux_transformer_checkpoint_to_diffusers)
    assert "inner_dim = 3072" in source
    namespace: dict[str, Any] = dict(vars(utils))
    exec(source.replace("inner_dim = 3072", f"inner_dim = {width}"), namespace)
    return namespace["convert_flux_transformer_checkpoint_to_diffusers"]


def test_the_key_mapping_is_diffusers_own_at_any_width(parts: dict[str, Any]) -> None:
    state = parts["transformer"].state_dict()
    bfl = to_bfl(state)
    expected = _diffusers_converter(64)({"model.diffusion_model." + k: v.clone() for k, v in bfl.items()})
    ours = to_diffusers(bfl)
    assert set(ours) == set(expected) == set(state)
    assert all(torch.equal(ours[k], expected[k]) and torch.equal(ours[k], state[k]) for k in ours)


def test_unknown_tensors_are_refused_by_name(parts: dict[str, Any]) -> None:
    bfl = to_bfl(parts["transformer"].state_dict())
    with pytest.raises(KeyError, match="stray"):
        to_diffusers({**bfl, "stray.weight": torch.zeros(1)})


def test_flux_dev_config_is_read_from_its_shapes() -> None:
    shapes = {
        "img_in.weight": [3072, 64], "txt_in.weight": [3072, 4096], "vector_in.in_layer.weight": [3072, 768],
        "guidance_in.in_layer.weight": [3072, 256], "final_layer.linear.weight": [64, 3072],
        "double_blocks.0.img_attn.norm.query_norm.scale": [128],
        **{f"double_blocks.{i}.img_mod.lin.weight": [18432, 3072] for i in range(19)},
        **{f"single_blocks.{i}.linear2.weight": [3072, 15360] for i in range(38)},
    }  # fmt: skip
    config = transformer_config(shapes)
    assert {k: config[k] for k in ("num_layers", "num_single_layers", "num_attention_heads", "attention_head_dim",
                                    "joint_attention_dim", "pooled_projection_dim", "in_channels", "guidance_embeds",
                                    "axes_dims_rope")} == {
        "num_layers": 19, "num_single_layers": 38, "num_attention_heads": 24, "attention_head_dim": 128,
        "joint_attention_dim": 4096, "pooled_projection_dim": 768, "in_channels": 64, "guidance_embeds": True,
        "axes_dims_rope": [16, 56, 56],
    }  # fmt: skip


# Parameter text: Forge's keys and order, civitai's blocks fixed up


CIVITAI = (
    "a fox\nSteps: 20, CFG scale: 3.5, Sampler: Undefined, Seed: 7, Size: 832x1216, Clip skip: 1, Created Date: "
    '2024-08-20T1, Civitai resources: [{"type":"checkpoint","modelVersionId":691639,"modelName":"FLUX",'
    '"modelVersionName":"Dev"}]'
)


@pytest.mark.parametrize(
    "line",
    [
        CIVITAI.split("\n")[1],
        "Steps: 20, Sampler: Undefined, CFG scale: 2, Clip skip: 12, Civitai resources: FLUX",
        "Steps: 20, Sampler: Euler, CFG scale: 7, Clip skip: 2, Model: sdxl",  # not civitai's Flux: unchanged
        'Steps: 20, CFG scale: 3.5, Civitai resources: [{"modelName":"flux.1 dev"}]',  # Forge's case-sensitive check
    ],
)
def test_civitai_flux_lines_are_fixed_up_as_forge_does(line: str) -> None:
    assert civitai_flux_fix(line) == ref.civitai_fix(line)


def test_civitais_hires_cfg_does_not_overwrite_the_distilled_cfg_as_in_forge() -> None:
    line = "Steps: 20, CFG scale: 3.5, Hires CFG scale: 5, Sampler: Undefined, Civitai resources: FLUX"
    assert "Hires CFG scale: 1, Distilled CFG Scale: 5" in ref.civitai_fix(line)  # Forge's plain replace
    fixed = civitai_flux_fix(line)
    assert "CFG scale: 1, Distilled CFG Scale: 3.5, Hires CFG scale: 5" in fixed


def test_a_pasted_civitai_flux_block_reads_as_cfg_1_distilled_euler_simple() -> None:
    options, notes = options_from_infotext(parse_infotext(CIVITAI))
    assert {k: options[k] for k in ("cfg_scale", "distilled_cfg_scale", "sampler", "schedule", "clip_skip")} == {
        "cfg_scale": "1", "distilled_cfg_scale": "3.5", "sampler": "Euler", "schedule": "Simple", "clip_skip": "1",
    }  # fmt: skip
    assert not any("Sampler" in note for note in notes)


def test_forges_keys_are_written_in_forges_order_and_read_back() -> None:
    params = GenerationParams(prompt="a fox", model="flux1-dev", seed=3, cfg_scale=1.0, distilled_cfg_scale=4.5,
                              sampler="Euler", schedule="Simple", width=896, height=1152)  # fmt: skip
    extra = {"Distilled CFG Scale": "4.5", "Module 1": "ae", "Module 2": "clip_l", "Module 3": "t5xxl_fp16"}
    line = parameter_line(params, model_name="flux1-dev", model_hash="abc", extra=extra, version="f2.0.1")
    assert line == (
        "Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 4.5, Seed: 3, Size: "
        "896x1152, Model hash: abc, Model: flux1-dev, Version: f2.0.1, Module 1: ae, Module 2: clip_l, Module 3: "
        "t5xxl_fp16"
    )
    pasted = "a fox\n" + line + ", Diffusion in Low Bits: Automatic (fp16 LoRA)"
    options, notes = options_from_infotext(parse_infotext(pasted))
    assert (options["distilled_cfg_scale"], options["cfg_scale"], notes) == ("4.5", "1", [])


def test_a_low_bits_choice_easel_does_not_make_is_noted() -> None:
    _, notes = options_from_infotext(parse_infotext("a\nSteps: 4, Seed: 1, Diffusion in Low Bits: bnb-nf4"))
    assert any(re.search("Diffusion in Low Bits", note) for note in notes)


def test_the_shipped_t5_tokenizer_is_googles_with_its_special_ids(tokenizer: Any) -> None:
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert len(tokenizer) == 32100
    assert Path(inspect.getfile(t5_tokenizer)).parent.parent.joinpath("data", "t5_tokenizer").is_dir()


# Requests: what a Flux model cannot do is refused before queueing; its defaults; its cost


def _flux_catalog() -> Any:
    from engine.request import Catalog
    from tests.fakes import FakeEntry, FakeNetworks, FakeRegistry

    registry = FakeRegistry(entries_=[FakeEntry("flux1-dev", "single-file", family="flux")])
    registry.defaults = ModelDefaults(width=896, height=1152, cfg_scale=1.0, sampler="Euler", schedule="Simple")
    return Catalog(registry, FakeNetworks())


@pytest.mark.parametrize(
    ("prompt", "refusal"),
    [
        ("a fox --steps 4", None),
        ("a fox <lora:detail:0.8>", "LoRA"),
    ],
)
def test_a_flux_request_takes_forges_defaults_and_the_guidance_flag(prompt: str, refusal: str | None) -> None:
    from engine.request import Request, resolve

    if refusal is not None:
        with pytest.raises(EaselError, match=refusal):
            resolve(Request(prompt=prompt), _flux_catalog(), Limits(max_pixels=1024 * 1152))
        return
    params = resolve(Request(prompt=prompt + " --guidance 2.5"), _flux_catalog(), Limits(max_pixels=1024 * 1152)).params
    assert (params.width, params.height, params.cfg_scale, params.distilled_cfg_scale) == (896, 1152, 1.0, 2.5)
    assert (params.sampler, params.schedule, params.steps) == ("Euler", "Simple", 4)


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        ({"sampler": "DDIM"}, "Sampler DDIM does not run on Flux"),
        ({"sampler": "UniPC"}, "Sampler UniPC does not run on Flux"),
        ({"sampler": "LCM"}, "Sampler LCM does not run on Flux"),
        ({"schedule": "Align Your Steps"}, "made for SD models"),
        ({"tiling": True}, "Tiling"),
    ],
)
def test_what_flux_cannot_run_is_refused_before_queueing(options: dict[str, Any], refusal: str) -> None:
    from engine.request import Request, resolve

    with pytest.raises(InvalidParamsError, match=refusal):
        resolve(Request(prompt="a fox", options=options), _flux_catalog(), Limits(max_pixels=1024 * 1152))


def test_a_flux_job_costs_its_flops_and_cfg_1_runs_one_row() -> None:
    from engine.plan import FLUX_ROW_WEIGHT, ModelTraits, make_plan

    params = GenerationParams(prompt="a fox", model="m", seed=1, steps=28, width=1024, height=1024, cfg_scale=1.0,
                              sampler="Euler", schedule="Simple")  # fmt: skip
    flux = make_plan(params, ModelTraits(family="flux")).cost()
    sdxl = make_plan(params.replace(steps=30, cfg_scale=7.0), ModelTraits(family="sdxl")).cost()
    assert flux == pytest.approx(28 * 4 * FLUX_ROW_WEIGHT / 2)
    # FLOPs: 28 x 74.4 TFLOP against an SDXL image's 30 x 13.5 (about 5x); the SDXL cost here counts SD 1.5 rows.
    assert pytest.approx(5.1, abs=0.1) == 28 * 74.4 / (30 * 13.5)
    assert flux / sdxl > 5
    assert make_plan(params.replace(cfg_scale=3.0), ModelTraits(family="flux")).cost() == pytest.approx(2 * flux)
    batched = make_plan(params.replace(distilled_cfg_scale=2.0), ModelTraits(family="flux"))
    assert batched.batch_key() != make_plan(params, ModelTraits(family="flux")).batch_key()


def test_flux_computes_in_bf16_on_a_gpu_and_the_memory_policy_is_checked() -> None:
    from pydantic import ValidationError

    from config.settings import Settings
    from engine.speed import SpeedOptions

    assert SpeedOptions().flux_dtype("cuda") == torch.bfloat16  # T5-XXL and Flux overflow fp16 (Forge uses bf16)
    assert SpeedOptions(dtype="fp32").flux_dtype("cuda") == torch.float32
    assert SpeedOptions().flux_dtype("cpu") == torch.float32
    assert Settings(flux_memory="Offload", flux_t5_cpu=True).flux_memory == "offload"
    with pytest.raises(ValidationError, match="resident or offload"):
        Settings(flux_memory="sequential")


def test_a_forge_hires_block_reads_its_hires_cfg_and_distilled_cfg() -> None:
    block = (
        "a fox\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 1, "
        "Size: 896x1152, Model: flux1-dev, Denoising strength: 0.4, Hires upscale: 1.5, Hires steps: 10, "
        "Hires upscaler: Latent, Hires CFG Scale: 2, Hires Distilled CFG Scale: 4, Version: f2.0.1v1.10.1"
    )
    options, notes = options_from_infotext(parse_infotext(block))
    params = build_params(options, model="flux1-dev", limits=Limits(max_hires_pixels=1344 * 1728))
    assert (params.hr_cfg_scale, params.hr_distilled_cfg_scale, notes) == (2.0, 4.0, [])
    from engine.plan import ModelTraits, make_plan

    plan = make_plan(params, ModelTraits(family="flux"))
    fields = dict(plan.infotext_fields)
    assert (fields["Hires CFG Scale"], "Hires Distilled CFG Scale" in fields) == ("2", True)
    plain = make_plan(params.replace(hr_cfg_scale=None), ModelTraits(family="sd1"))
    assert "Hires CFG Scale" not in dict(plain.infotext_fields)  # A1111's text for SD, unless set apart
