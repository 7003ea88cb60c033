"""The generation plan: A1111's pass arithmetic, model calls, prompt rules and parameter-text fields, decided without
torch (milliseconds per test)."""

from __future__ import annotations

import pytest

from engine.errors import InvalidParamsError
from engine.infotext import parameter_line
from engine.params import GenerationParams, Limits, build_params
from engine.plan import ModelTraits, img2img_steps, make_plan, unet_calls
from engine.prompts.extra_networks import LoraCall
from engine.samplers import SAMPLERS, sampler_spec


def params(**changes: object) -> GenerationParams:
    base = GenerationParams(prompt="a cat", model="m", seed=1, steps=20, sampler="Euler", width=512, height=512)
    return base.replace(**changes)


# Passes in A1111's arithmetic


def test_txt2img_is_one_pass_of_all_its_steps() -> None:
    [only] = make_plan(params()).passes
    assert (only.kind, only.schedule_steps, only.run_steps, only.denoise) == ("txt2img", 20, 20, None)


@pytest.mark.parametrize(("strength", "run"), [(0.75, 16), (0.5, 11), (1.0, 20), (0.01, 1)])
def test_img2img_runs_a1111s_share_of_the_schedule(strength: float, run: int) -> None:
    [only] = make_plan(params(init_image="0" * 64, denoising_strength=strength)).passes
    assert (only.kind, only.schedule_steps, only.run_steps) == ("img2img", 20, run)


def test_img2img_at_strength_zero_runs_nothing() -> None:
    [only] = make_plan(params(init_image="0" * 64, denoising_strength=0.0)).passes
    assert only.run_steps == 0 and only.unet_calls == 0


def test_the_hires_pass_runs_its_steps_of_a_longer_schedule() -> None:
    first, hires = make_plan(params(enable_hr=True, hr_scale=2.0, hr_steps=10, denoising_strength=0.4)).passes
    assert (first.width, hires.width, hires.height) == (512, 1024, 1024)
    assert (hires.kind, hires.steps, hires.schedule_steps, hires.run_steps) == ("hires", 10, 25, 10)
    assert hires.upscale is not None and hires.upscale.latent


def test_hires_steps_zero_means_the_jobs_steps() -> None:
    hires = make_plan(params(enable_hr=True, denoising_strength=0.7)).passes[1]
    assert (hires.steps, hires.schedule_steps) == (20, img2img_steps(20, 0.7, hires=True)[0])


def test_hires_to_a_size_of_another_aspect_upscales_to_cover_then_crops() -> None:
    plan = make_plan(params(width=512, height=512, enable_hr=True, hr_resize_x=1024, hr_resize_y=768))
    hires = plan.passes[1]
    assert hires.upscale is not None and (hires.upscale.width, hires.upscale.height) == (1024, 1024)
    assert (hires.width, hires.height) == (plan.width, plan.height) == (1024, 768)


def test_hires_sizes_round_to_the_models_latent_scale() -> None:
    hires = params(width=64, height=64, enable_hr=True, hr_scale=1.3125)  # 84 x 84
    assert make_plan(hires, ModelTraits(latent_scale=8)).width == 80
    assert make_plan(hires, ModelTraits(latent_scale=4)).width == 84


def test_an_image_upscaler_is_not_latent() -> None:
    hires = make_plan(params(enable_hr=True, hr_upscaler="Lanczos", denoising_strength=0.5)).passes[1]
    assert hires.upscale is not None and not hires.upscale.latent


# Model calls, as each family's loop makes them


@pytest.mark.parametrize(
    ("sampler", "calls"),
    [("Euler", 20), ("DPM++ 2M", 20), ("Heun", 39), ("DPM++ SDE", 39), ("Restart", 39), ("DPM fast", 20),
     ("DDIM", 19), ("PLMS", 20), ("UniPC", 20), ("LCM", 20)],
)  # fmt: skip
def test_txt2img_model_calls(sampler: str, calls: int) -> None:
    assert make_plan(params(sampler=sampler)).unet_calls == calls


def test_a1111s_timestep_grid_can_be_longer_than_the_steps() -> None:
    assert make_plan(params(sampler="DDIM", steps=36)).unet_calls == 37  # 1000 // 36 = 27: 38 grid points


def test_img2img_with_a_timestep_sampler_walks_t_enc_points() -> None:
    assert make_plan(params(sampler="DDIM", init_image="0" * 64, denoising_strength=0.5)).unet_calls == 9
    assert make_plan(params(sampler="PLMS", init_image="0" * 64, denoising_strength=0.5)).unet_calls == 10


def test_every_sampler_costs_at_least_one_call_per_step_but_dpm_adaptive() -> None:
    for spec in SAMPLERS:
        calls = unet_calls(spec, 20, 20, from_noise=True)
        assert calls >= 19 if spec.name != "DPM adaptive" else calls > 0, spec.name


# Cost, for the queue's estimates


def test_cost_is_one_unit_per_model_call_at_512_with_cfg() -> None:
    assert make_plan(params()).cost() == pytest.approx(20.0)


def test_cost_scales_with_pixels_and_batch() -> None:
    assert make_plan(params(width=1024, height=512, batch_size=2)).cost() == pytest.approx(80.0)


def test_cost_counts_second_order_samplers_and_hires_passes() -> None:
    assert make_plan(params(sampler="Heun")).cost() == pytest.approx(39.0)
    hires = make_plan(params(enable_hr=True, hr_scale=2.0, denoising_strength=0.5)).cost()
    assert hires == pytest.approx(20 + 20 * 4)


def test_cost_counts_and_parts_as_rows() -> None:
    assert make_plan(params(prompt="a cat AND a dog")).cost() == pytest.approx(30.0)


# The prompt: LoRA tags, AND, prompt editing


def test_lora_tags_leave_the_prompt_and_become_calls_in_order() -> None:
    plan = make_plan(params(prompt="a cat <lora:ink:0.5>, <lora:fur:1:0.2>", negative_prompt="<lora:bad:-1> blur"))
    assert plan.prompt == "a cat , "
    assert plan.negative_prompt == " blur"
    assert plan.loras == (LoraCall("ink", 0.5, 0.5), LoraCall("fur", 1.0, 0.2), LoraCall("bad", -1.0, -1.0))


def test_another_kind_of_extra_network_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="hypernet"):
        make_plan(params(prompt="a cat <hypernet:h:1>"))


def test_and_parts_carry_their_weights() -> None:
    [only] = make_plan(params(prompt="a cat AND a dog:0.5")).passes
    assert [(p.schedule, p.weight) for p in only.conditioning.parts] == [
        (((20, "a cat"),), 1.0),
        (((20, " a dog"),), 0.5),
    ]


def test_prompt_editing_counts_model_calls_for_second_order_samplers() -> None:
    [only] = make_plan(params(prompt="a [cat:dog:2]", steps=4, sampler="Heun")).passes
    assert only.conditioning.parts[0].schedule == ((2, "a cat"), (8, "a dog"))


def test_the_hires_pass_has_its_own_prompt_editing_schedule() -> None:
    first, hires = make_plan(params(prompt="[cat:dog:1.5]", steps=10, enable_hr=True, hr_steps=4)).passes
    assert first.conditioning.parts[0].schedule == ((10, "cat"),)
    assert hires.conditioning.parts[0].schedule == ((2, "cat"), (4, "dog"))


def test_texts_lists_each_text_a_pass_encodes_once() -> None:
    [only] = make_plan(params(prompt="[cat|dog]", negative_prompt="cat", steps=4)).passes
    assert only.conditioning.texts() == ["cat", "dog"]


# Schedule and parameter-text fields


def test_automatic_runs_the_samplers_default_schedule() -> None:
    assert make_plan(params(sampler="DPM++ 2M")).schedule == "Karras"
    assert make_plan(params(sampler="Euler")).schedule == "Automatic"
    assert make_plan(params(sampler="DPM++ 2M", schedule="Exponential")).schedule == "Exponential"


def test_the_plan_adds_hires_fields_in_a1111s_order() -> None:
    plan = make_plan(params(enable_hr=True, hr_scale=1.5, hr_steps=8, denoising_strength=0.55, hr_upscaler="Lanczos"))
    assert plan.infotext_fields == (
        ("Denoising strength", "0.55"),
        ("Hires upscale", "1.5"),
        ("Hires steps", "8"),
        ("Hires upscaler", "Lanczos"),
    )


def test_the_hires_pass_runs_its_own_sampler_and_schedule() -> None:
    hires_fix = {"enable_hr": True, "denoising_strength": 0.5}
    plan = make_plan(params(sampler="Euler", steps=10, hr_sampler="DPM++ 2S a", hr_steps=6, **hires_fix))
    first, hires = plan.passes
    assert (first.sampler.name, first.schedule, first.unet_calls) == ("Euler", "Automatic", 10)
    assert (hires.sampler.name, hires.schedule) == ("DPM++ 2S a", "Karras")
    assert hires.unet_calls == 2 * 6 - 1  # second order: its own model calls, not the main sampler's
    # Its prompt editing counts the hires sampler's calls: [a:b:1.5] switches half-way through the hires pass.
    editing = make_plan(params(prompt="[a:b:1.5]", sampler="Euler", steps=10, hr_sampler="DPM++ 2S a", **hires_fix))
    assert editing.passes[1].conditioning.parts[0].schedule == ((10, "a"), (20, "b"))
    assert plan.batch_key() != make_plan(params(sampler="Euler", steps=10, hr_steps=6, **hires_fix)).batch_key()


def test_hires_sampler_fields_follow_a1111s_rules() -> None:
    def fields(**changes: object) -> dict[str, str | None]:
        return dict(make_plan(params(enable_hr=True, **changes)).infotext_fields)

    # A different sampler is written; its schedule only when a schedule function runs with another label than
    # the one the first pass recorded.
    assert fields(sampler="DPM++ 2M", hr_sampler="Euler a").get("Hires sampler") == "Euler a"
    assert "Hires schedule type" not in fields(sampler="DPM++ 2M", hr_sampler="Euler a")  # Euler a: the model's own
    assert fields(sampler="Euler", hr_schedule="Karras")["Hires schedule type"] == "Karras"
    assert "Hires schedule type" not in fields(sampler="DPM++ 2M", hr_sampler="DPM++ SDE")  # Karras both
    assert fields(sampler="DPM++ 2M", hr_sampler="DPM++ 2M SDE")["Hires schedule type"] == "Exponential"
    assert "Hires schedule type" not in fields(sampler="Euler", hr_sampler="DDIM")  # no schedule for DDIM
    written = fields(sampler="Euler", hr_sampler="Heun", hr_schedule="Karras", denoising_strength=0.5)
    order = [key for key, value in written.items() if value is not None]
    assert order == ["Denoising strength", "Hires sampler", "Hires schedule type", "Hires upscale", "Hires upscaler"]
    built = build_params(
        {"prompt": "a", "sampler": "Euler", "enable_hr": True, "hr_sampler": "Heun"}, model="m", limits=Limits()
    )
    line = parameter_line(built, model_name="m", model_hash=None, extra=dict(make_plan(built).infotext_fields))
    assert "Denoising strength: 0.7, Hires sampler: Heun, Hires upscale: 2, Hires upscaler: Latent" in line


def test_ensd_is_recorded_only_for_samplers_whose_noise_it_moves() -> None:
    assert ("ENSD", "31337") in make_plan(params(sampler="Euler a", ensd=31337)).infotext_fields
    assert all(key != "ENSD" for key, _ in make_plan(params(sampler="Euler", ensd=31337)).infotext_fields)
    assert sampler_spec("Euler a").uses_ensd and not sampler_spec("Euler").uses_ensd


def test_rng_is_recorded_unless_it_is_gpu() -> None:
    assert ("RNG", "CPU") in make_plan(params(rng="CPU")).infotext_fields
    assert make_plan(params(rng="GPU")).infotext_fields == ()


def test_the_sdxl_hires_pass_is_conditioned_on_a1111s_target_resolution() -> None:
    from engine.params import GenerationParams
    from engine.plan import make_plan

    base = GenerationParams(prompt="a", model="m", seed=1, width=832, height=1216, enable_hr=True,
                            denoising_strength=0.5)  # fmt: skip
    scaled = make_plan(base.replace(hr_scale=1.3)).passes[-1]
    assert (scaled.width, scaled.height, scaled.conditioned_on) == (1080, 1576, (1081, 1580))
    resized = make_plan(base.replace(hr_resize_x=1024, hr_resize_y=1024)).passes[-1]
    assert (resized.width, resized.height, resized.conditioned_on) == (1024, 1024, (1024, 1496))
    one_side = make_plan(base.replace(hr_resize_x=1000)).passes[-1]
    assert one_side.conditioned_on == (1000, 1000 * 1216 // 832)
    first = make_plan(base.replace(hr_scale=1.3)).passes[0]
    assert first.conditioned_on == (832, 1216)
