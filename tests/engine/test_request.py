"""The request resolver, without Discord or torch: precedence of the layers, stored defaults checked key by key,
inline flags, styles, the LoRA and VAE pre-checks and the notes, for every kind of entry point."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import InvalidParamsError, ModelUnavailableError
from engine.params import GenerationParams, Limits, ModelDefaults
from engine.request import CHANNEL, SERVER, USER, Catalog, Layer, Request, resolve, with_lora
from engine.styles import Style
from tests.fakes import FakeNetworks, FakeRegistry

LIMITS = Limits(max_steps=50, max_pixels=1024 * 1024)
BLOCK = "a pasted castle\nNegative prompt: fog\nSteps: 12, Sampler: Euler a, CFG scale: 6, Seed: 77, Size: 512x768"


def catalog(**registry: Any) -> Catalog:
    return Catalog(FakeRegistry(**registry), FakeNetworks())


def run(request: Request, limits: Limits = LIMITS, **registry: Any) -> tuple[GenerationParams, tuple[str, ...]]:
    resolved = resolve(request, catalog(**registry), limits)
    return resolved.params, resolved.notes


def test_explicit_options_win_over_flags_which_win_over_a_paste_which_wins_over_stored_defaults() -> None:
    stored = [Layer(SERVER, {"steps": 20, "cfg_scale": 4, "sampler": "Heun"}), Layer(USER, {"steps": 25})]
    params, _ = run(Request(prompt="", paste=BLOCK, stored=stored))
    assert (params.steps, params.cfg_scale, params.sampler, params.seed) == (12, 6.0, "Euler a", 77)
    params, _ = run(Request(prompt="a cat --steps 30", paste=BLOCK, stored=stored))
    assert (params.prompt, params.steps) == ("a cat", 30)
    params, _ = run(Request(prompt="a cat --steps 30", options={"steps": 40}, paste=BLOCK, stored=stored))
    assert params.steps == 40
    params, _ = run(Request(prompt="a cat", stored=stored))
    assert (params.steps, params.cfg_scale, params.sampler) == (25, 4.0, "Heun")


def test_a_channel_default_wins_over_the_server_default() -> None:
    stored = [Layer(SERVER, {"steps": 20, "model": "anime-v3"}), Layer(CHANNEL, {"steps": 22, "model": "photo-xl"})]
    params, _ = run(Request(prompt="a", stored=stored))
    assert (params.steps, params.model) == (22, "photo-xl")


def test_a_stored_default_that_todays_limits_break_is_left_out_alone_with_a_note() -> None:
    stored = [Layer(USER, {"steps": 40, "cfg_scale": 3})]
    params, notes = run(Request(prompt="a", stored=stored), Limits(max_steps=30))
    assert (params.steps, params.cfg_scale) == (4, 3.0)  # the model's steps; the user's CFG still applies
    assert len(notes) == 1 and "Your /settings default steps" in notes[0] and "between 1 and 30" in notes[0]


def test_a_stored_size_over_the_pixel_limit_is_left_out_and_a_stored_aspect_becomes_a_size() -> None:
    params, notes = run(Request(prompt="a", stored=[Layer(SERVER, {"width": 1024, "height": 1024})]),
                        Limits(max_pixels=512 * 512))  # fmt: skip
    assert (params.width, params.height) == (64, 64) and "This server's default size 1024x1024" in notes[0]
    params, _ = run(Request(prompt="a", stored=[Layer(SERVER, {"aspect": "2:1"})]), defaults=ModelDefaults())
    assert abs(params.width / params.height - 2) < 0.05


def test_a_stored_combined_sampler_name_gives_its_schedule() -> None:
    params, _ = run(Request(prompt="a", stored=[Layer(USER, {"sampler": "dpm++ 2m karras"})]))
    assert (params.sampler, params.schedule) == ("DPM++ 2M", "Automatic")  # Karras is DPM++ 2M's own


def test_ar_and_no_flags_set_the_size_and_the_negative_prompt() -> None:
    params, _ = run(Request(prompt="a beach --ar 16:9 --no people, boats", options={"negative_prompt": "blur"}),
                    defaults=ModelDefaults())  # fmt: skip
    assert params.prompt == "a beach" and params.negative_prompt == "blur, people, boats"
    assert params.width > params.height and abs(params.width / params.height - 16 / 9) < 0.05


def test_an_unknown_flag_is_refused_with_the_known_ones() -> None:
    with pytest.raises(InvalidParamsError, match=r"Unknown flag `--zoom`.*--ar"):
        run(Request(prompt="a --zoom 2"))


def test_a_block_typed_as_the_prompt_is_read_as_a_block() -> None:
    params, _ = run(Request(prompt=BLOCK))
    assert (params.prompt, params.negative_prompt, params.seed, params.height) == ("a pasted castle", "fog", 77, 768)


def test_a_typed_prompt_replaces_the_pasted_one_with_a_note() -> None:
    params, notes = run(Request(prompt="a dog", paste=BLOCK))
    assert params.prompt == "a dog" and params.seed == 77
    assert "Your prompt replaced the pasted block's prompt." in notes


def test_a_pasted_model_that_is_not_here_falls_back_with_a_note() -> None:
    params, notes = run(Request(paste=BLOCK + ', Model: "somewhere-else"'))
    assert params.model == "builtin:tiny" and "`somewhere-else` is not available here" in notes[0]
    params, notes = run(Request(paste=BLOCK + ", Model: anime-v3"))
    assert params.model == "anime-v3" and notes == ()


def test_an_unknown_model_option_is_refused_with_the_closest_names() -> None:
    with pytest.raises(ModelUnavailableError, match="Did you mean anime-v3"):
        run(Request(prompt="a", model="anime-v2"))


def test_an_unknown_lora_anywhere_in_the_prompts_is_refused_before_queueing_with_the_closest() -> None:
    with pytest.raises(InvalidParamsError, match=r"Unknown LoRA 'gren'\. Closest: green"):
        run(Request(prompt="a cat <lora:gren:1>"))
    with pytest.raises(InvalidParamsError, match="Unknown LoRA"):
        run(Request(paste=BLOCK.replace("fog", "fog <lora:nope:1>")))


def test_a_lora_made_for_another_family_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="made for sdxl"):
        run(Request(prompt="a cat", lora="anime-lineart"))


def test_the_lora_option_appends_its_tag_and_a_weight_without_a_lora_is_noted() -> None:
    params, _ = run(Request(prompt="a cat", lora="GREEN", lora_weight=0.5))
    assert params.prompt == "a cat <lora:green:0.5>"
    _, notes = run(Request(prompt="a cat", lora_weight=0.5))
    assert "Ignored `lora_weight`: no `lora` was chosen." in notes


def test_the_lora_option_replaces_a_tag_for_the_same_lora_and_says_so() -> None:
    notes: list[str] = []
    assert with_lora("a cat <lora:Ink:0.2> <lora:fur:1>", "ink", 1.0, notes) == "a cat  <lora:fur:1> <lora:ink:1>"
    assert notes == ["The `lora` option replaced `<lora:Ink:0.2>` in the prompt."]


def test_a_vae_for_another_family_is_refused_and_a_pasted_one_that_is_not_here_is_noted() -> None:
    with pytest.raises(InvalidParamsError, match="made for sdxl"):
        run(Request(prompt="a", options={"vae": "sdxl_vae"}))
    params, notes = run(Request(paste=BLOCK + ", VAE: missing.safetensors"))
    assert params.vae is None and "The pasted VAE `missing.safetensors` is not available here" in notes[0]
    params, _ = run(Request(prompt="a", options={"vae": "clearvae"}))
    assert params.vae == "clearvae.safetensors"


STYLES = [Style("ink", "{prompt}, ink drawing", "colour"), Style("moody", "dark, moody", "")]


def test_styles_apply_in_order_and_an_unknown_one_is_refused() -> None:
    params, _ = run(Request(prompt="a cat", style="ink, moody", styles=STYLES))
    assert params.prompt == "a cat, ink drawing, dark, moody" and params.negative_prompt == "colour"
    with pytest.raises(InvalidParamsError, match="ink"):
        run(Request(prompt="a cat", style="inc", styles=STYLES))


def test_a_pasted_prompt_carrying_a_style_gets_it_back_and_a_server_default_style_applies() -> None:
    pasted = BLOCK.replace("a pasted castle", "a castle, ink drawing").replace("fog", "colour")
    params, _ = run(Request(paste=pasted, styles=STYLES))
    assert params.prompt == "a castle, ink drawing" and params.negative_prompt == "colour"
    params, _ = run(Request(prompt="a cat", styles=STYLES, stored=[Layer(SERVER, {"style": "moody"})]))
    assert params.prompt == "a cat, dark, moody"


BASE = GenerationParams(prompt="a <lora:green:1> fox", model="anime-v3", seed=9, steps=7, width=64, height=64)


def test_a_base_job_replays_to_equal_params_and_takes_changes() -> None:
    assert run(Request(base=BASE))[0] == BASE
    assert run(Request(base=BASE, options={"seed": 10}))[0] == BASE.replace(seed=10)


def test_a_base_job_is_checked_again_against_todays_limits_and_loras() -> None:
    with pytest.raises(InvalidParamsError, match="Steps must be between 1 and 5"):
        run(Request(base=BASE), Limits(max_steps=5))
    gone = FakeNetworks(loras_=[])
    with pytest.raises(InvalidParamsError, match="Unknown LoRA 'green'"):
        resolve(Request(base=BASE), Catalog(FakeRegistry(), gone), LIMITS)


def test_a_base_job_drawn_with_the_checkpoints_own_vae_keeps_it_when_the_model_has_a_default() -> None:
    params, _ = run(Request(base=BASE), defaults=ModelDefaults(vae="vae-ft-mse-840000-ema-pruned.safetensors"))
    assert params.vae is None


def test_an_init_images_aspect_is_kept_unless_the_request_sets_a_size() -> None:
    image = "ab" * 32
    params, _ = run(Request(prompt="a", init_image=image, init_size=(1000, 500)), defaults=ModelDefaults())
    assert params.init_image == image and abs(params.width / params.height - 2) < 0.05
    params, _ = run(Request(prompt="a", init_image=image, init_size=(1000, 500), options={"width": 512}),
                    defaults=ModelDefaults())  # fmt: skip
    assert (params.width, params.height) == (512, 512)


def test_a_pasted_denoising_strength_with_an_init_image_is_the_img2img_strength() -> None:
    params, _ = run(Request(paste=BLOCK + ", Denoising strength: 0.4", init_image="ab" * 32))
    assert params.denoising_strength == 0.4 and not params.enable_hr


def test_one_request_builds_params_once(builds: list[object]) -> None:
    stored = [Layer(SERVER, {"steps": 20}), Layer(CHANNEL, {"cfg_scale": 5}), Layer(USER, {"sampler": "Euler"})]
    run(Request(prompt="a --ar 2:3", paste=BLOCK, stored=stored, lora="green", style="ink", styles=STYLES))
    assert len(builds) == 1


FOUNDING = "a castle\nSteps: 20, Sampler: Euler a, Seed: 1, Size: 1024x1024, Denoising strength: 0.68"


def test_a_paste_whose_denoising_strength_turns_hires_on_says_so_when_hires_is_too_large() -> None:
    small = Limits(max_hires_pixels=2 * 1024 * 1024)
    with pytest.raises(InvalidParamsError) as refused:
        run(Request(paste=FOUNDING), small)
    text = str(refused.value)
    assert text.startswith("Hires fix would make 2048x2048 (4,194,304 pixels); this server allows at most 2,097,152")
    assert "the pasted parameters have `Denoising strength: 0.68` and no init image" in text
    assert text.endswith("turn it off with `hires: False`.")
    params, _ = run(Request(paste=FOUNDING, options={"enable_hr": False}), small)
    assert (params.enable_hr, params.width) == (False, 1024)


def test_the_default_limits_allow_a_1024_squared_image_with_hires_times_two() -> None:
    params, _ = run(Request(paste=FOUNDING))
    assert (params.enable_hr, params.hr_scale, params.denoising_strength) == (True, 2.0, 0.68)


def test_limits_messages_name_the_bots_config_and_its_setting_on_the_command_line() -> None:
    cli = Limits(max_pixels=512 * 512, scope="the bot's config", settings_named=True)
    with pytest.raises(InvalidParamsError, match=r"the bot's config allows at most 262,144 \(EASEL_MAX_PIXELS\)"):
        run(Request(prompt="a", options={"width": 1024, "height": 1024}), cli)
    with pytest.raises(InvalidParamsError, match=r"turn it off with --no-hires\.$"):
        run(Request(paste=FOUNDING, hires_off="--no-hires"), Limits(max_hires_pixels=1024 * 1024))
