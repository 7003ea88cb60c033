"""Infotext writing and reading, checked against A1111 v1.10.1's create_infotext/parse_generation_parameters."""

from pathlib import Path
from typing import Any

import pytest

from engine.infotext import (
    ModelHint,
    create_infotext,
    looks_like_infotext,
    model_from_infotext,
    options_from_infotext,
    parse_infotext,
    quote,
    unquote,
)
from engine.params import GenerationParams, Limits, build_params
from engine.pipeline import DiffusersEngine

FIXTURES = Path(__file__).parent.parent / "data" / "a1111"
LIMITS = Limits()


def params(**options: Any) -> GenerationParams:
    return build_params({"seed": 1234, **options}, model="sd15", limits=LIMITS)


# quote / unquote (§1.2)


def test_quote_leaves_plain_values_alone() -> None:
    assert quote("v1-5-pruned-emaonly") == "v1-5-pruned-emaonly"


def test_quote_json_quotes_values_with_commas_or_colons() -> None:
    assert quote("add_detail: 7c6bad76eb54, more_details: 3b8aa1d351ef") == (
        '"add_detail: 7c6bad76eb54, more_details: 3b8aa1d351ef"'
    )


def test_quote_escapes_newlines_and_quotes_and_keeps_unicode() -> None:
    assert quote('猫 "a",\nb') == '"猫 \\"a\\",\\nb"'


def test_unquote_decodes_json() -> None:
    assert unquote('"merge, v2: final"') == "merge, v2: final"


def test_unquote_keeps_bad_json_raw() -> None:
    assert unquote('"a" b "c"') == '"a" b "c"'


def test_unquote_leaves_unquoted_values_alone() -> None:
    assert unquote("7") == "7"


# create_infotext (§1.1, §1.3)


def test_create_infotext_matches_a1111_shape() -> None:
    p = params(prompt="a cat", negative_prompt="blurry", steps=20, width=512, height=768)
    assert create_infotext(p, model_name="v1-5-pruned-emaonly", model_hash="6ce0161689", version="v1.10.1") == (
        "a cat\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
    )


def test_create_infotext_leaves_out_an_empty_negative_prompt() -> None:
    text = create_infotext(params(prompt="a cat"), model_name="m", model_hash=None)
    assert text.split("\n") == [
        "a cat",
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
        "Model: m, Version: Easel 0.1.0",
    ]


def test_create_infotext_with_empty_prompt_starts_with_the_parameters() -> None:
    text = create_infotext(params(prompt=""), model_name="m", model_hash=None)
    assert text.startswith("Steps: 20,")


def test_create_infotext_keeps_fractional_cfg() -> None:
    text = create_infotext(params(prompt="a", cfg_scale=7.5), model_name="m", model_hash=None)
    assert ", CFG scale: 7.5, " in text


def test_create_infotext_writes_automatic_for_samplers_without_a_default_schedule() -> None:
    text = create_infotext(params(prompt="a", sampler="Euler a"), model_name="m", model_hash=None)
    assert "Sampler: Euler a, Schedule type: Automatic, " in text


def test_create_infotext_writes_the_automatic_schedule_by_name() -> None:
    text = create_infotext(params(prompt="a", sampler="DPM++ 2M SDE"), model_name="m", model_hash=None)
    assert "Sampler: DPM++ 2M SDE, Schedule type: Exponential, " in text


def test_create_infotext_writes_variation_seed_after_model() -> None:
    p = params(prompt="a", subseed=99, subseed_strength=0.3)
    text = create_infotext(p, model_name="m", model_hash="abc")
    assert "Model hash: abc, Model: m, Variation seed: 99, Variation seed strength: 0.3, Version:" in text


def test_create_infotext_uses_the_per_image_seed() -> None:
    p = params(prompt="a", batch_size=3)
    text = create_infotext(p, model_name="m", model_hash=None, image_index=2)
    assert ", Seed: 1236, " in text


def test_create_infotext_variation_batch_keeps_the_seed_and_steps_the_subseed() -> None:
    p = params(prompt="a", batch_size=3, subseed=10, subseed_strength=0.5)
    text = create_infotext(p, model_name="m", model_hash=None, image_index=2)
    assert ", Seed: 1234, " in text and "Variation seed: 12," in text


def test_create_infotext_writes_clip_skip_only_above_one() -> None:
    with_skip = create_infotext(params(prompt="a", clip_skip=2), model_name="m", model_hash=None)
    without = create_infotext(params(prompt="a"), model_name="m", model_hash=None)
    assert ", Clip skip: 2, Version:" in with_skip and "Clip skip" not in without


def test_create_infotext_puts_extra_entries_before_version_in_order() -> None:
    extra = {"RNG": "CPU", "Lora hashes": "add_detail: 7c6bad76eb54", "Hires upscale": "2"}
    text = create_infotext(params(prompt="a", clip_skip=2), model_name="m", model_hash=None, extra=extra)
    assert text.endswith(
        'Clip skip: 2, RNG: CPU, Lora hashes: "add_detail: 7c6bad76eb54", Hires upscale: 2, Version: Easel 0.1.0'
    )


def test_create_infotext_puts_denoising_strength_in_its_fixed_slot() -> None:
    extra = {"Hires upscale": "2", "Denoising strength": "0.45"}
    text = create_infotext(params(prompt="a", clip_skip=2), model_name="m", model_hash=None, extra=extra)
    assert "Model: m, Denoising strength: 0.45, Clip skip: 2, Hires upscale: 2, Version:" in text


def test_create_infotext_leaves_out_none_extras() -> None:
    text = create_infotext(params(prompt="a"), model_name="m", model_hash=None, extra={"RNG": None})
    assert "RNG" not in text


def test_create_infotext_writes_a_flag_whose_value_is_its_key_bare() -> None:
    text = create_infotext(params(prompt="a"), model_name="m", model_hash=None, extra={"NGMS": "NGMS"})
    assert ", NGMS, Version:" in text


def test_create_infotext_quotes_model_names_with_commas_and_colons() -> None:
    text = create_infotext(params(prompt="a"), model_name="merge, v2: final", model_hash=None)
    assert 'Model: "merge, v2: final"' in text


# parse_infotext (§1.4)


def test_parse_reads_the_a1111_typical_output() -> None:
    fields = parse_infotext((FIXTURES / "v1_10_hires.txt").read_text(encoding="utf-8"))
    assert fields["Prompt"] == "masterpiece, (best quality:1.2), 1girl, <lora:add_detail:0.6>"
    assert fields["Negative prompt"] == "(worst quality:1.4), EasyNegative"
    assert (fields["Steps"], fields["Sampler"], fields["Schedule type"]) == ("25", "DPM++ 2M", "Karras")
    assert (fields["Size-1"], fields["Size-2"], fields["Seed"]) == ("512", "768", "3839472721")
    assert fields["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert fields["Hires upscaler"] == "R-ESRGAN 4x+ Anime6B"


def test_parse_adds_a1111_typed_defaults() -> None:
    fields = parse_infotext("a\nSteps: 20, Sampler: Euler a, Seed: 1")
    assert fields["Clip skip"] == "1"
    assert fields["RNG"] == "GPU"
    assert fields["Schedule type"] == "Automatic"
    assert fields["Hires resize-1"] == 0 and fields["Hires resize-2"] == 0
    assert fields["Masked area padding"] == 32
    assert fields["Hires sampler"] == "Use same sampler"
    assert fields["Hires schedule type"] == "Use same scheduler"
    assert fields["FP8 weight"] == "Disable" and "Cache FP16 weight for LoRA" not in fields
    assert fields["Refiner switch by sampling steps"] is False


def test_parse_stores_prompt_keys_after_the_parameters() -> None:
    keys = list(parse_infotext("a\nSteps: 20, Sampler: Euler a, Seed: 1"))
    assert keys[:5] == ["Steps", "Sampler", "Seed", "Prompt", "Negative prompt"]


def test_parse_keeps_multiline_prompts_and_strips_each_line() -> None:
    fields = parse_infotext("  line one  \nline two\r\nNegative prompt:  bad \n worse\nSteps: 1, Seed: 2, Size: 8x8")
    assert fields["Prompt"] == "line one\nline two"
    assert fields["Negative prompt"] == "bad\nworse"


def test_parse_with_fewer_than_three_pairs_reads_the_last_line_as_prompt() -> None:
    fields = parse_infotext("a cat\nSteps: 20, Seed: 5")
    assert fields["Prompt"] == "a cat\nSteps: 20, Seed: 5" and "Steps" not in fields


def test_parse_a_one_line_prompt_with_three_pairs_is_all_parameters() -> None:
    fields = parse_infotext("style: anime, mood: dark, light: soft")
    assert fields["Prompt"] == "" and fields["style"] == "anime"


def test_parse_negative_prompt_switch_is_case_sensitive() -> None:
    fields = parse_infotext("a\nnegative prompt: b\nSteps: 1, Seed: 2, Size: 8x8")
    assert fields["Prompt"] == "a\nnegative prompt: b" and fields["Negative prompt"] == ""


def test_parse_skips_one_letter_keys() -> None:
    fields = parse_infotext("a\nSteps: 1, X: 5, Seed: 2, Size: 8x8")
    assert "X" not in fields


def test_parse_drops_empty_values() -> None:
    fields = parse_infotext("a\nSteps: 1, Model: , Seed: 2, Size: 8x8")
    assert "Model" not in fields


def test_parse_cuts_unquoted_values_at_the_first_comma() -> None:
    fields = parse_infotext('a\nSteps: 1, Civitai resources: [{"a":1},{"b":2}], Seed: 2, Size: 8x8')
    assert fields["Civitai resources"] == '[{"a":1}'


def test_parse_later_duplicate_key_wins() -> None:
    assert parse_infotext("a\nSteps: 1, Seed: 2, Steps: 3")["Steps"] == "3"


def test_parse_appends_hypernet_tag_to_the_prompt() -> None:
    fields = parse_infotext("a\nSteps: 1, Seed: 2, Hypernet: anime, Hypernet strength: 0.5")
    assert fields["Prompt"] == "a<hypernet:anime:0.5>"


def test_parse_converts_old_hires_fix_first_pass_size() -> None:
    fields = parse_infotext((FIXTURES / "old_hires_first_pass.txt").read_text(encoding="utf-8"))
    assert (fields["Size-1"], fields["Size-2"]) == (640, 448)
    assert (fields["Hires resize-1"], fields["Hires resize-2"]) == (1024, 768)


def test_parse_converts_explicit_first_pass_size() -> None:
    fields = parse_infotext("a\nSteps: 1, Seed: 2, Size: 1024x1024, First pass size: 512x512")
    assert (fields["Size-1"], fields["Size-2"], fields["Hires resize-1"]) == (512, 512, 1024)


def test_parse_adds_original_emphasis_when_the_prompt_uses_weights() -> None:
    assert parse_infotext("(a:1.2)\nSteps: 1, Seed: 2, Size: 8x8")["Emphasis"] == "Original"


def test_parse_adds_no_emphasis_for_break_alone() -> None:
    assert "Emphasis" not in parse_infotext("a BREAK b\nSteps: 1, Seed: 2, Size: 8x8")


def test_parse_checks_the_negative_prompt_for_emphasis() -> None:
    assert parse_infotext("a\nNegative prompt: [b]\nSteps: 1, Seed: 2, Size: 8x8")["Emphasis"] == "Original"


def test_parse_keeps_an_explicit_emphasis() -> None:
    assert parse_infotext("(a)\nSteps: 1, Seed: 2, Emphasis: No norm")["Emphasis"] == "No norm"


def test_parse_backcompat_before_1_6_sets_old_timelines_for_edits() -> None:
    fields = parse_infotext("[a:b:5]\nSteps: 1, Seed: 2, Version: v1.5.1")
    assert fields["Old prompt editing timelines"] is True and fields["Downcast alphas_cumprod"] is True


def test_parse_backcompat_pads_conds_for_old_ddim() -> None:
    assert parse_infotext("a\nSteps: 1, Sampler: DDIM, Version: v1.5.0")["Pad conds v0"] is True


def test_parse_backcompat_cuts_git_describe_suffixes() -> None:
    fields = parse_infotext("a\nSteps: 1, Seed: 2, Version: v1.7.0-RC-5-gf92d6149")
    assert fields["Downcast alphas_cumprod"] is True


def test_parse_backcompat_after_the_tsnr_commit_adds_nothing() -> None:
    assert "Downcast alphas_cumprod" not in parse_infotext("a\nSteps: 1, Seed: 2, Version: v1.7.0-225-gabc")


def test_parse_backcompat_ignores_forge_versions() -> None:
    fields = parse_infotext("a\nSteps: 1, Seed: 2, Version: f2.0.1v1.10.1-previous-669-gdfdcbab6")
    assert "Downcast alphas_cumprod" not in fields


def test_parse_backcompat_refiner_before_1_8_switches_by_steps() -> None:
    fields = parse_infotext("a\nSteps: 1, Seed: 2, Refiner: sdxl_refiner, Version: v1.7.0")
    assert fields["Refiner switch by sampling steps"] is True


def test_parse_does_not_crash_on_a_weight_a1111_crashes_on() -> None:
    assert "Emphasis" not in parse_infotext("(a:1.2.3)\nSteps: 1, Seed: 2, Size: 8x8")


# looks_like_infotext


def test_looks_like_infotext_accepts_a_pasted_block() -> None:
    assert looks_like_infotext((FIXTURES / "v1_10_hires.txt").read_text(encoding="utf-8"))


def test_looks_like_infotext_rejects_a_plain_prompt() -> None:
    assert not looks_like_infotext("a cat, (sitting:1.2), on a mat")


def test_looks_like_infotext_rejects_key_value_prose() -> None:
    assert not looks_like_infotext("style: anime, mood: dark, light: soft")


# options_from_infotext


def test_options_from_a1111_text() -> None:
    options, _ = options_from_infotext(parse_infotext((FIXTURES / "v1_10_hires.txt").read_text(encoding="utf-8")))
    assert options == {
        "prompt": "masterpiece, (best quality:1.2), 1girl, <lora:add_detail:0.6>",
        "negative_prompt": "(worst quality:1.4), EasyNegative",
        "steps": "25",
        "sampler": "DPM++ 2M",
        "schedule": "Karras",
        "cfg_scale": "7",
        "seed": "3839472721",
        "width": "512",
        "height": "768",
        "clip_skip": "2",
        "rng": "GPU",
        "enable_hr": True,
        "denoising_strength": "0.45",
        "hr_scale": "2",
        "hr_resize_x": 0,
        "hr_resize_y": 0,
        "hr_steps": "15",
        "hr_upscaler": "R-ESRGAN 4x+ Anime6B",
        # A1111's get_hr_sampler_and_scheduler: Karras is DPM++ 2M's own default, so it reads back as Automatic
        "hr_schedule": "Automatic",
    }


def test_hires_sampler_fields_read_as_a1111s_get_hr_sampler_and_scheduler() -> None:
    def read(text: str) -> tuple[str | None, str | None]:
        options, _ = options_from_infotext(parse_infotext(f"a\n{text}, Denoising strength: 0.5, Hires upscale: 2"))
        return options.get("hr_sampler"), options.get("hr_schedule")

    assert read("Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, Seed: 1") == (None, "Automatic")
    assert read("Steps: 20, Sampler: Euler a, Schedule type: Automatic, Seed: 1") == (None, None)
    assert read("Steps: 20, Sampler: Euler a, Schedule type: Karras, Seed: 1") == (None, None)
    assert read("Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, Hires sampler: Euler, Seed: 1") == (
        "Euler", None,
    )  # fmt: skip
    assert read("Steps: 20, Sampler: Euler, Schedule type: Karras, Hires schedule type: Exponential, Seed: 1") == (
        None, "Exponential",
    )  # fmt: skip


def test_options_keep_a_pasted_upscaler_model_for_the_resolver_to_find() -> None:
    options, notes = options_from_infotext(parse_infotext((FIXTURES / "v1_10_hires.txt").read_text(encoding="utf-8")))
    assert options["hr_upscaler"] == "R-ESRGAN 4x+ Anime6B" and notes == []


def test_options_from_a1111_hires_text_build_valid_params() -> None:
    options, _ = options_from_infotext(parse_infotext((FIXTURES / "v1_10_hires.txt").read_text(encoding="utf-8")))
    p = build_params(options, model="m", limits=Limits(max_pixels=2048 * 2048))
    hires = (p.enable_hr, p.denoising_strength, p.hr_scale, p.hr_steps, p.hr_upscaler)
    assert hires == (True, 0.45, 2.0, 15, "R-ESRGAN 4x+ Anime6B")


def test_options_any_denoising_strength_switches_hires_on_in_txt2img() -> None:
    # A1111's quirk: the parser always adds `Hires resize-1`, so Denoising strength alone is enough.
    options, notes = options_from_infotext(parse_infotext("a\nSteps: 1, Seed: 2, Denoising strength: 0.5"))
    assert options["enable_hr"] is True
    assert options["denoising_strength"] == "0.5"
    assert notes == []


def test_options_without_denoising_strength_leave_hires_off() -> None:
    options, notes = options_from_infotext(parse_infotext("a\nSteps: 1, Seed: 2, Hires upscale: 2"))
    assert "enable_hr" not in options and "hr_scale" not in options
    assert notes == ["Hires upscale: 2 is not supported yet and was ignored"]


def test_options_with_an_init_image_read_denoising_strength_as_img2img() -> None:
    text = "a\nSteps: 1, Seed: 2, Denoising strength: 0.3, Hires upscale: 2"
    options, notes = options_from_infotext(parse_infotext(text), init_image="ab" * 32)
    assert options["init_image"] == "ab" * 32
    assert options["denoising_strength"] == "0.3"
    assert "enable_hr" not in options
    assert notes == ["Hires upscale: 2 is not supported yet and was ignored"]
    p = build_params(options, model="m", limits=LIMITS)
    assert (p.init_image, p.denoising_strength, p.enable_hr) == ("ab" * 32, 0.3, False)


def test_options_read_hires_resize() -> None:
    options, _ = options_from_infotext(
        parse_infotext("a\nSteps: 1, Seed: 2, Size: 512x512, Denoising strength: 0.6, Hires resize: 768x640")
    )
    p = build_params(options, model="m", limits=LIMITS)
    assert (p.enable_hr, p.hr_resize_x, p.hr_resize_y, p.denoising_strength) == (True, 768, 640, 0.6)


def test_options_read_a_hires_sampler_and_schedule_as_a1111_does() -> None:
    """`get_hr_sampler_and_scheduler`: "Use same" or absent takes the main one; a combined name carries its
    schedule; what equals the main field reads back as the same."""

    def hires(fields: str) -> tuple[str | None, str | None, list[str]]:
        text = f"a\nSteps: 4, Sampler: DPM++ 2M, Schedule type: Karras, Seed: 2, Denoising strength: 0.5, {fields}"
        options, notes = options_from_infotext(parse_infotext(text))
        p = build_params(options, model="m", limits=LIMITS)
        return p.hr_sampler, p.hr_schedule, notes

    # `DPM++ 2M` + `Karras` is its default, so the job's schedule reads as Automatic (as A1111's paste makes it):
    # "Use same scheduler" then gives DDIM (which takes none) and Euler a (the model's own) that Automatic.
    assert hires("Hires upscale: 2, Hires sampler: DDIM") == ("DDIM", None, [])
    assert hires("Hires upscale: 2, Hires sampler: Euler a") == ("Euler a", None, [])
    assert hires("Hires upscale: 2, Hires schedule type: Exponential") == (None, "Exponential", [])
    assert hires("Hires upscale: 2, Hires sampler: Euler Uniform") == ("Euler", "Uniform", [])
    assert hires("Hires upscale: 2, Hires sampler: DPM++ 2M, Hires schedule type: Karras") == (None, None, [])
    assert hires("Hires upscale: 2, Hires sampler: Nonesuch") == (
        None,
        None,
        ["Hires sampler: Nonesuch (Karras) is not available here; used the main one"],
    )


def test_options_keep_quiet_about_hires_settings_equal_to_the_main_ones() -> None:
    text = (
        "a\nNegative prompt: b\nSteps: 1, Sampler: Euler, Seed: 2, Denoising strength: 0.5, Hires upscale: 2, "
        "Hires sampler: Euler, Hires prompt: a, Hires negative prompt: b"
    )
    _, notes = options_from_infotext(parse_infotext(text))
    assert notes == []


def test_options_read_seed_resize_rng_and_ensd() -> None:
    text = "a\nSteps: 1, Seed: 2, Seed resize from: 512x768, ENSD: 31337, RNG: NV"
    options, notes = options_from_infotext(parse_infotext(text))
    p = build_params(options, model="m", limits=LIMITS)
    assert (p.seed_resize_from_w, p.seed_resize_from_h, p.ensd, p.rng) == (512, 768, 31337, "NV")
    assert notes == []


def test_options_without_rng_mean_gpu_even_on_a_cpu_server() -> None:
    # A1111's parser adds `RNG: GPU` when missing: an old infotext was made with the GPU's numbers.
    options, _ = options_from_infotext(parse_infotext("a\nSteps: 1, Seed: 2, Size: 64x64"))
    p = build_params(options, model="m", limits=Limits(default_rng="CPU"))
    assert p.rng == "GPU"


def test_options_note_a_size_pair_once() -> None:
    _, notes = options_from_infotext(parse_infotext("a\nSteps: 1, Seed: 2, Hires resize: 512x768"))
    assert notes == ["Hires resize: 512x768 is not supported yet and was ignored"]


def test_options_note_old_hires_fix_as_hires_resize() -> None:
    text = (FIXTURES / "old_hires_first_pass.txt").read_text(encoding="utf-8")
    _, notes = options_from_infotext(parse_infotext(text))
    assert notes == ["Hires resize: 1024x768 is not supported yet and was ignored"]


def test_options_note_non_default_emphasis() -> None:
    _, notes = options_from_infotext(parse_infotext("(a)\nSteps: 1, Seed: 2, RNG: NV, Emphasis: No norm"))
    assert notes == ["Emphasis: No norm is not supported yet and was ignored"]


def test_options_shorten_long_notes() -> None:
    _, notes = options_from_infotext(parse_infotext(f"a\nSteps: 1, Seed: 2, Hires prompt: {'x' * 100}"))
    assert notes == [f"Hires prompt: {'x' * 57}... is not supported yet and was ignored"]


def test_options_split_a_combined_old_sampler_name_when_built() -> None:
    text = (FIXTURES / "pre_1_9_combined_sampler.txt").read_text(encoding="utf-8")
    options, notes = options_from_infotext(parse_infotext(text))
    p = build_params(options, model="m", limits=LIMITS)
    assert (p.sampler, p.schedule, p.seed, p.cfg_scale) == ("DPM++ 2M SDE", "Karras", 12345678901, 6.5)
    assert notes == ["Downcast alphas_cumprod: True is not supported yet and was ignored"]  # v1.6.0 < v1.7.0-225


def test_model_hint_reads_quoted_model_names() -> None:
    text = (FIXTURES / "pre_1_9_combined_sampler.txt").read_text(encoding="utf-8")
    assert model_from_infotext(parse_infotext(text)) == ModelHint("dreamshaper, v8: final", "1a2b3c4d5e")


def test_model_hint_is_empty_without_model_fields() -> None:
    assert model_from_infotext(parse_infotext("a\nSteps: 1, Seed: 2, Size: 8x8")) == ModelHint(None, None)


# Round trip: params -> text -> fields -> options -> params


@pytest.mark.parametrize(
    "options",
    [
        {"prompt": "a cat"},
        {"prompt": 'a "quoted" cat, (sitting:1.2)\non a mat: indoors', "negative_prompt": "ugly,\nblurry, bad: 1"},
        {"prompt": "猫, ñ — 🎨", "sampler": "DPM++ 2M SDE Karras", "cfg_scale": 7.5, "clip_skip": 2},
        {"prompt": "a", "seed": 2**40, "subseed": 999, "subseed_strength": 0.3, "width": 640, "height": 896},
        {"prompt": "[a:b:0.5] AND c", "sampler": "Euler a", "schedule": "Uniform", "steps": 33},
        {"prompt": "", "negative_prompt": "only negative", "sampler": "DDIM", "cfg_scale": 1},
        {"prompt": "<lora:add_detail:0.6> x", "sampler": "DPM++ 2M", "schedule": "Karras", "subseed_strength": 1},
    ],
)
def test_round_trip_gives_equal_params(options: dict[str, Any]) -> None:
    original = params(**options)
    text = create_infotext(original, model_name="merge, v2: final", model_hash="6ce0161689")
    fields = parse_infotext(text)
    pasted, notes = options_from_infotext(fields)
    assert build_params(pasted, model=original.model, limits=LIMITS) == original
    assert notes == []
    assert model_from_infotext(fields) == ModelHint("merge, v2: final", "6ce0161689")


# Round trip through the real engine: params -> generated image's infotext -> fields -> options -> params


@pytest.mark.parametrize(
    "options",
    [
        {"enable_hr": True, "hr_scale": 1.5, "hr_steps": 2, "denoising_strength": 0.55, "rng": "NV"},
        {"enable_hr": True, "hr_resize_x": 96, "hr_resize_y": 80, "hr_upscaler": "Latent (bicubic)", "rng": "CPU"},
        {"enable_hr": True, "hr_upscaler": "Lanczos", "sampler": "Euler a", "ensd": 31337},
        {"seed_resize_from_w": 128, "seed_resize_from_h": 96, "subseed": 5, "subseed_strength": 0.25},
        {"sampler": "Euler a", "ensd": 1, "rng": "CPU", "clip_skip": 2, "negative_prompt": "fog, (rain:1.2)"},
    ],
)
def test_engine_infotext_round_trips_to_the_same_params(engine: DiffusersEngine, options: dict[str, Any]) -> None:
    original = build_params(
        {"prompt": "a lighthouse, [dusk:night:0.5]", "seed": 42, "steps": 2, "sampler": "Euler", "width": 64,
         "height": 64, **options},
        model="builtin:tiny",
        limits=LIMITS,
    )  # fmt: skip
    text = engine.generate(original)[0].infotext
    fields = parse_infotext(text)
    pasted, notes = options_from_infotext(fields)
    assert notes == []
    assert build_params(pasted, model="builtin:tiny", limits=LIMITS) == original
    assert model_from_infotext(fields).name == "builtin:tiny"
