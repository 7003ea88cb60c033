"""A1111 fidelity on the real engine (builtin:tiny, 64x64, a few steps): each feature changes the conditioning or the
image where A1111's does, and nothing where it should not."""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import engine.denoise
from engine.conditioning import Conditioner, tokenize_chunks
from engine.denoise import Schedule, decode, encode
from engine.errors import InvalidParamsError
from engine.families import TextCond
from engine.infotext import parse_infotext
from engine.loras import LoraLibrary
from engine.params import GenerationParams
from engine.pipeline import DiffusersEngine, LoadedModel
from engine.samplers import sampler_names
from engine.seeds import ImageRNG
from tests.engine.conftest import tiny_params

WORDS = ["red", "green", "blue", "cat", "dog", "house", "tree", "sky", "sun", "moon"]  # one CLIP token each


def pixels(engine: DiffusersEngine, **changes: Any) -> np.ndarray:
    return np.asarray(engine.generate(tiny_params(**changes))[0].image).astype(np.int16)


@pytest.fixture
def tiny(engine: DiffusersEngine) -> LoadedModel:
    return engine.load("builtin:tiny")


@pytest.fixture
def cond(tiny: LoadedModel) -> Conditioner:
    return tiny.conditioner


def words(n: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n))


# Emphasis, chunks, BREAK, clip skip (A1111 §3.2, §3.7)


def test_a_weight_changes_the_conditioning(cond: Conditioner) -> None:
    assert not torch.equal(cond.encode("a (cat:1.5) on a mat"), cond.encode("a cat on a mat"))


def test_a_weight_of_one_changes_nothing(cond: Conditioner) -> None:
    assert torch.equal(cond.encode("a (cat:1.0) on a mat"), cond.encode("a cat on a mat"))


def test_emphasis_keeps_the_mean(tiny: LoadedModel) -> None:
    # builtin:tiny's final layer norm has no bias, so its outputs have mean ~0; give a copy one, as CLIP's has.
    text_encoder = copy.deepcopy(tiny.pipe.text_encoder)
    with torch.no_grad():
        text_encoder.final_layer_norm.bias.fill_(0.3)
    cond = Conditioner(tiny.pipe.tokenizer, text_encoder, "cpu")
    weighted, plain = cond.encode("a (cat:1.5) on a [mat]"), cond.encode("a cat on a mat")
    assert not torch.equal(weighted, plain)
    assert torch.allclose(weighted.mean(), plain.mean(), rtol=1e-5)


def test_emphasis_on_a_zero_mean_encoder_stays_finite(cond: Conditioner) -> None:
    # A1111's rescale divides by the mean; builtin:tiny's is ~0 (and exactly 0 for some chunks).
    assert torch.isfinite(cond.encode("a (cat:1.5) on a [mat]")).all()
    assert torch.isfinite(cond.encode(words(80))).all()


def test_break_makes_two_chunks(tiny: LoadedModel, cond: Conditioner) -> None:
    chunks, _ = tokenize_chunks(tiny.pipe.tokenizer, "a cat BREAK a dog")
    assert len(chunks) == 2
    assert cond.encode("a cat BREAK a dog").shape == (1, 77 * 2, 32)


def test_a_long_prompt_gives_more_chunks_and_is_never_truncated(engine: DiffusersEngine, cond: Conditioner) -> None:
    long, first = words(80), words(75)
    assert cond.encode(long).shape == (1, 77 * 2, 32)
    assert torch.equal(cond.encode(long)[:, :77], cond.encode(first))
    assert not np.array_equal(pixels(engine, prompt=long), pixels(engine, prompt=first))


def test_comma_backtracking_moves_the_words_after_the_last_comma(tiny: LoadedModel) -> None:
    tokenizer = tiny.pipe.tokenizer
    chunks, _ = tokenize_chunks(tokenizer, words(70) + ", " + " ".join(["star"] * 8))
    [star] = tokenizer("star", add_special_tokens=False)["input_ids"]
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    assert len(chunks) == 2
    assert chunks[0].tokens[71] == comma  # BOS + 70 words + comma, then padding
    assert chunks[0].tokens[72:76] == [tokenizer.eos_token_id] * 4
    assert chunks[1].tokens[1:9] == [star] * 8


def test_escaped_brackets_are_literal(tiny: LoadedModel, cond: Conditioner) -> None:
    tokenizer = tiny.pipe.tokenizer
    [chunk], _ = tokenize_chunks(tokenizer, r"\(cat\)")
    literal = tokenizer("(cat)", add_special_tokens=False)["input_ids"]
    assert chunk.tokens[1 : 1 + len(literal)] == literal
    assert set(chunk.multipliers) == {1.0}
    assert not torch.equal(cond.encode(r"\(cat\)"), cond.encode("(cat)"))


def test_clip_skip_two_changes_the_conditioning(cond: Conditioner) -> None:
    assert not torch.equal(cond.encode("a cat", clip_skip=2), cond.encode("a cat"))


# Prompt editing, alternation, AND (§3.3, §3.4)


@pytest.fixture
def picked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Schedule, int, torch.Tensor]]]:
    """Every conditioning Guidance picks, with the model call (step) it was picked for."""
    calls: list[tuple[Schedule, int, torch.Tensor]] = []
    real_pick = engine.denoise.pick

    def spy(schedule: Schedule, step: int) -> TextCond:
        result = real_pick(schedule, step)
        calls.append((schedule, step, result.crossattn))
        return result

    monkeypatch.setattr(engine.denoise, "pick", spy)
    yield calls


def texts_per_call(calls: list[tuple[Schedule, int, torch.Tensor]], cond: Conditioner, texts: list[str]) -> list[str]:
    """For the positive schedule (the one with several entries), which text each model call used."""
    encoded = {text: cond.encode(text) for text in texts}
    out = []
    for schedule, _, result in calls:
        if len(schedule) > 1:
            out.append(next(t for t, e in encoded.items() if e.shape == result.shape and torch.equal(e, result)))
    return out


def test_prompt_editing_changes_the_image(engine: DiffusersEngine) -> None:
    edited = pixels(engine, prompt="a [lighthouse:volcano:0.5] at dusk")
    assert not np.array_equal(edited, pixels(engine, prompt="a lighthouse at dusk"))
    assert not np.array_equal(edited, pixels(engine, prompt="a volcano at dusk"))


def test_prompt_editing_switches_after_the_a1111_step(
    engine: DiffusersEngine, cond: Conditioner, picked: list[tuple[Schedule, int, torch.Tensor]]
) -> None:
    # 4 steps, when = int(0.5 * 4) = 2: A1111 uses `from` while step <= 2, i.e. for model calls 0, 1 and 2.
    engine.generate(tiny_params(prompt="a [lighthouse:volcano:0.5] at dusk", steps=4, sampler="Euler"))
    used = texts_per_call(picked, cond, ["a lighthouse at dusk", "a volcano at dusk"])
    assert used == ["a lighthouse at dusk"] * 3 + ["a volcano at dusk"]


def test_prompt_editing_counts_model_calls_for_second_order_samplers(
    engine: DiffusersEngine, cond: Conditioner, picked: list[tuple[Schedule, int, torch.Tensor]]
) -> None:
    # Heun, 4 steps: A1111 schedules over 2 * 4 = 8 model calls, so an absolute `2` switches after call 2.
    engine.generate(tiny_params(prompt="a [lighthouse:volcano:2] at dusk", steps=4, sampler="Heun"))
    used = texts_per_call(picked, cond, ["a lighthouse at dusk", "a volcano at dusk"])
    assert used[:3] == ["a lighthouse at dusk"] * 3
    assert set(used[3:]) == {"a volcano at dusk"}


def test_alternation_alternates_as_a1111_does(
    engine: DiffusersEngine, cond: Conditioner, picked: list[tuple[Schedule, int, torch.Tensor]]
) -> None:
    # The schedule is (1, cat), (2, dog), (3, cat), (4, dog) and A1111's CFGDenoiser counts model calls from 0,
    # picking the first entry with call <= end: so cat, cat, dog, cat (its well-known off-by-one, kept).
    engine.generate(tiny_params(prompt="a [cat|dog]", steps=4, sampler="Euler"))
    assert texts_per_call(picked, cond, ["a cat", "a dog"]) == ["a cat", "a cat", "a dog", "a cat"]


def test_alternation_changes_the_image(engine: DiffusersEngine) -> None:
    alternated = pixels(engine, prompt="a [cat|dog]")
    assert not np.array_equal(alternated, pixels(engine, prompt="a cat"))
    assert not np.array_equal(alternated, pixels(engine, prompt="a dog"))


def test_and_changes_the_image(engine: DiffusersEngine) -> None:
    both = pixels(engine, prompt="a lighthouse AND a storm")
    assert not np.array_equal(both, pixels(engine, prompt="a lighthouse"))
    assert not np.array_equal(both, pixels(engine, prompt="a storm"))


def test_and_with_weight_zero_is_the_first_part_alone(engine: DiffusersEngine) -> None:
    # Equal but for the low bits a bigger UNet batch changes.
    zero = pixels(engine, prompt="a lighthouse AND a storm:0")
    assert np.abs(zero - pixels(engine, prompt="a lighthouse")).max() <= 2


# Seeds and noise (§5)


def test_variation_strength_zero_is_the_base_image(engine: DiffusersEngine) -> None:
    assert np.array_equal(pixels(engine, subseed=7, subseed_strength=0.0), pixels(engine))


def test_variation_strength_above_zero_differs(engine: DiffusersEngine) -> None:
    assert not np.array_equal(pixels(engine, subseed=7, subseed_strength=0.2), pixels(engine))


@pytest.mark.parametrize("sampler", ["Euler", "Euler a"])
def test_a_variation_batch_item_equals_the_same_item_run_alone(engine: DiffusersEngine, sampler: str) -> None:
    batch = engine.generate(tiny_params(batch_size=2, subseed=7, subseed_strength=0.4, sampler=sampler))
    assert [image.seed for image in batch] == [42, 42]
    alone = pixels(engine, subseed=8, subseed_strength=0.4, sampler=sampler)
    # Equal but for the low bits a bigger UNet batch may change.
    assert np.abs(np.asarray(batch[1].image).astype(np.int16) - alone).max() <= 1


def test_seed_resize_changes_the_noise_and_the_image(engine: DiffusersEngine) -> None:
    base = ImageRNG((4, 8, 8), [42], source="CPU").first()
    resized = ImageRNG((4, 8, 8), [42], source="CPU", seed_resize_from=(12, 16)).first()
    assert not torch.equal(base, resized)
    assert not np.array_equal(pixels(engine, seed_resize_from_w=128, seed_resize_from_h=96), pixels(engine))


def test_seed_resize_from_the_same_size_changes_nothing(engine: DiffusersEngine) -> None:
    assert np.array_equal(pixels(engine, seed_resize_from_w=64, seed_resize_from_h=64), pixels(engine))


def test_nv_noise_is_cudas_randn() -> None:
    noise = ImageRNG((4, 8, 8), [0], source="NV").first().flatten()
    assert noise[:3].tolist() == pytest.approx([-0.9247, -0.4253, -2.6438], abs=1e-4)


def test_cpu_and_nv_sources_give_different_noise(engine: DiffusersEngine) -> None:
    cpu = ImageRNG((4, 8, 8), [0], source="CPU").first()
    nv = ImageRNG((4, 8, 8), [0], source="NV").first()
    assert cpu.flatten()[:3].tolist() == pytest.approx([-1.1258, -1.1524, -0.2506], abs=1e-4)  # torch's CPU randn
    assert not torch.equal(cpu, nv)
    assert not np.array_equal(pixels(engine, rng="CPU"), pixels(engine, rng="NV"))


@pytest.mark.parametrize("rng", ["CPU", "NV"])
def test_an_ancestral_sampler_is_deterministic(engine: DiffusersEngine, rng: str) -> None:
    assert np.array_equal(pixels(engine, sampler="Euler a", rng=rng), pixels(engine, sampler="Euler a", rng=rng))


@pytest.mark.parametrize("rng", ["CPU", "NV"])
def test_ensd_changes_an_ancestral_samplers_image(engine: DiffusersEngine, rng: str) -> None:
    assert not np.array_equal(
        pixels(engine, sampler="Euler a", rng=rng, ensd=31337), pixels(engine, sampler="Euler a", rng=rng)
    )


def test_ensd_changes_restarts_image_too(engine: DiffusersEngine) -> None:
    # A1111 re-seeds after the first draw whatever the sampler; Restart draws restart noise from 20 steps on.
    assert not np.array_equal(
        pixels(engine, sampler="Restart", steps=20, ensd=31337), pixels(engine, sampler="Restart", steps=20)
    )


@pytest.mark.parametrize("sampler", sampler_names())
def test_every_sampler_is_deterministic_with_the_default_rng(engine: DiffusersEngine, sampler: str) -> None:
    assert np.array_equal(pixels(engine, sampler=sampler, steps=3), pixels(engine, sampler=sampler, steps=3))


def test_ensd_changes_nothing_for_euler(engine: DiffusersEngine) -> None:
    assert np.array_equal(pixels(engine, sampler="Euler", ensd=31337), pixels(engine, sampler="Euler"))


# Hires fix (§6) and img2img


def test_hires_fix_gives_the_upscaled_size_and_says_so(engine: DiffusersEngine) -> None:
    [result] = engine.generate(tiny_params(enable_hr=True, hr_scale=2.0, hr_steps=2, denoising_strength=0.6))
    assert result.image.size == (128, 128)
    fields = parse_infotext(result.infotext)
    assert (fields["Size-1"], fields["Hires upscale"], fields["Denoising strength"]) == ("64", "2", "0.6")


def test_the_hires_pass_runs_its_own_sampler(engine: DiffusersEngine) -> None:
    hires = {"enable_hr": True, "hr_scale": 2.0, "hr_steps": 3, "denoising_strength": 0.6, "sampler": "Euler"}
    [same] = engine.generate(tiny_params(**hires))
    [named_same] = engine.generate(tiny_params(**hires, hr_sampler="Euler"))
    [own] = engine.generate(tiny_params(**hires, hr_sampler="DPM++ 2S a", hr_schedule="Exponential"))
    [ddim] = engine.generate(tiny_params(**hires, hr_sampler="DDIM"))
    assert np.array_equal(np.asarray(same.image), np.asarray(named_same.image))
    assert "Hires sampler" not in same.infotext
    assert not np.array_equal(np.asarray(same.image), np.asarray(own.image))
    fields = parse_infotext(own.infotext)
    assert (fields["Hires sampler"], fields["Hires schedule type"]) == ("DPM++ 2S a", "Exponential")
    assert parse_infotext(ddim.infotext)["Hires sampler"] == "DDIM" and ddim.image.size == (128, 128)


@pytest.fixture
def init_image(engine: DiffusersEngine) -> tuple[str, np.ndarray]:
    """A 64x64 gradient stored in the engine's blob store, and its array."""
    y, x = np.mgrid[0:64, 0:64]
    array = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return engine.blobs.put(buffer.getvalue()), array


def reencoded(tiny: LoadedModel, array: np.ndarray) -> np.ndarray:
    tensor = torch.from_numpy(array.astype(np.float32) / 255).permute(2, 0, 1).unsqueeze(0)
    with torch.inference_mode():
        out = decode(tiny.pipe.vae, encode(tiny.pipe.vae, tensor))
    return np.asarray(tiny.pipe.numpy_to_pil(out.numpy())[0]).astype(np.int16)


def test_img2img_at_denoising_zero_returns_the_init_images_reencode(
    engine: DiffusersEngine, tiny: LoadedModel, init_image: tuple[str, np.ndarray]
) -> None:
    digest, array = init_image
    out = pixels(engine, init_image=digest, denoising_strength=0.0)
    assert np.abs(out - reencoded(tiny, array)).max() <= 1


def test_img2img_at_denoising_one_departs_from_the_init_image(
    engine: DiffusersEngine, tiny: LoadedModel, init_image: tuple[str, np.ndarray]
) -> None:
    # Measured against the re-encode's own spread: at strength 0 the difference is 0, at 1.0 it is about one
    # standard deviation (the image is then a txt2img image).
    digest, array = init_image
    out, start = pixels(engine, init_image=digest, denoising_strength=1.0), reencoded(tiny, array)
    assert np.abs(out - start).mean() > 0.3 * start.std()


def test_img2img_infotext_has_the_denoising_strength(engine: DiffusersEngine, init_image: tuple[str, Any]) -> None:
    text = engine.generate(tiny_params(init_image=init_image[0], denoising_strength=0.5))[0].infotext
    assert parse_infotext(text)["Denoising strength"] == "0.5"


# LoRA (§3.5): kohya and diffusers/peft files with the same matrices


RANK = 4
LORA_TARGETS = [
    f"{block}.transformer_blocks.0.{attn}.{proj}"
    for block in ("down_blocks.0.attentions.0", "up_blocks.1.attentions.1")
    for attn in ("attn1", "attn2")
    for proj in ("to_q", "to_k", "to_v")
]


def lora_matrices() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    return {
        t: (torch.randn(RANK, 32, generator=g) * 0.5, torch.randn(32, RANK, generator=g) * 0.5) for t in LORA_TARGETS
    }


@pytest.fixture
def lora_engine(engine: DiffusersEngine, tmp_path: Path) -> DiffusersEngine:
    folder = tmp_path / "loras"
    folder.mkdir()
    kohya: dict[str, torch.Tensor] = {}
    peft: dict[str, torch.Tensor] = {}
    for target, (down, up) in lora_matrices().items():
        key = "lora_unet_" + target.replace(".", "_")
        kohya[f"{key}.lora_down.weight"] = down
        kohya[f"{key}.lora_up.weight"] = up
        kohya[f"{key}.alpha"] = torch.tensor(float(RANK))  # scale alpha / rank = 1, as peft's default
        peft[f"unet.{target}.lora_A.weight"] = down
        peft[f"unet.{target}.lora_B.weight"] = up
    save_file(kohya, folder / "kohya_style.safetensors")
    save_file(peft, folder / "peft_style.safetensors")
    return DiffusersEngine(engine.registry, "cpu", loras=LoraLibrary.with_builtins([folder], engine.registry.hashes))


def test_a_lora_changes_the_image(lora_engine: DiffusersEngine) -> None:
    base = pixels(lora_engine)
    assert not np.array_equal(pixels(lora_engine, prompt="a lighthouse at dusk <lora:kohya_style:1>"), base)


def test_the_same_matrices_in_kohya_and_peft_files_give_the_same_image(lora_engine: DiffusersEngine) -> None:
    kohya = pixels(lora_engine, prompt="a lighthouse at dusk <lora:kohya_style:1>")
    peft = pixels(lora_engine, prompt="a lighthouse at dusk <lora:peft_style:1>")
    assert np.array_equal(kohya, peft)


def test_a_lora_at_weight_zero_gives_the_base_image(lora_engine: DiffusersEngine) -> None:
    base = pixels(lora_engine)
    assert np.array_equal(pixels(lora_engine, prompt="a lighthouse at dusk <lora:kohya_style:0>"), base)


def test_a_job_without_lora_after_lora_jobs_is_bit_identical_to_before(lora_engine: DiffusersEngine) -> None:
    before = pixels(lora_engine)
    pixels(lora_engine, prompt="a lighthouse at dusk <lora:kohya_style:1>")
    pixels(lora_engine, prompt="a lighthouse at dusk <lora:peft_style:0.5>")
    assert np.array_equal(pixels(lora_engine), before)


def test_lora_hashes_are_in_the_infotext(lora_engine: DiffusersEngine) -> None:
    text = lora_engine.generate(tiny_params(prompt="a lighthouse <lora:kohya_style:0.8>"))[0].infotext
    fields = parse_infotext(text)
    assert fields["Prompt"] == "a lighthouse <lora:kohya_style:0.8>"
    digest = lora_engine.loras.short_hash(lora_engine.loras.resolve("kohya_style"))
    assert fields["Lora hashes"] == f"kohya_style: {digest}"
    assert len(digest) == 12


def test_an_unknown_lora_names_the_closest(lora_engine: DiffusersEngine) -> None:
    with pytest.raises(InvalidParamsError, match=r"Unknown LoRA 'kohya_styel'.*kohya_style"):
        lora_engine.generate(tiny_params(prompt="a lighthouse <lora:kohya_styel:1>"))


@pytest.mark.parametrize(
    "text",
    ["1girl，solo，long hair", "“quoted” text", "fish &amp; chips", "<lora:x:1> fish &amp; chips", "café  latte",
     "a &amp;amp; b", "ｆｕｌｌ ｗｉｄｔｈ"],
)  # fmt: skip
@pytest.mark.parametrize("open_clip", [False, True])
def test_prompt_text_is_cleaned_as_a1111s_tokenizers_clean_it(text: str, open_clip: bool) -> None:
    from engine.conditioning import clean_text
    from tests.reference.prompt_cleaning import clip_tokenizer_text, open_clip_text

    expected = open_clip_text(text) if open_clip else clip_tokenizer_text(text)
    assert clean_text(text, open_clip=open_clip).lower() == expected


def test_full_width_commas_are_commas_for_the_tokenizer_and_its_backtracking(tiny: LoadedModel) -> None:
    tokenizer = tiny.pipe.tokenizer
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    [full], _ = tokenize_chunks(tokenizer, "1girl，solo，long hair")
    [ascii_], _ = tokenize_chunks(tokenizer, "1girl,solo,long hair")
    assert full.tokens == ascii_.tokens and full.tokens.count(comma) == 2


def test_html_entities_follow_each_encoders_rule(tiny: LoadedModel) -> None:
    tokenizer = tiny.pipe.tokenizer
    plain = tokenize_chunks(tokenizer, "fish & chips")[0][0].tokens
    assert tokenize_chunks(tokenizer, "fish &amp; chips")[0][0].tokens == plain
    assert tokenize_chunks(tokenizer, "fish &amp; chips", open_clip=True)[0][0].tokens == plain
    # ftfy leaves entities alone where the text has a `<` (it could be HTML); open_clip unescapes anyway
    assert (
        tokenize_chunks(tokenizer, "<a> fish &amp; chips")[0][0].tokens
        != tokenize_chunks(tokenizer, "<a> fish & chips")[0][0].tokens
    )
    assert (
        tokenize_chunks(tokenizer, "<a> fish &amp; chips", open_clip=True)[0][0].tokens
        == tokenize_chunks(tokenizer, "<a> fish & chips")[0][0].tokens
    )


def test_tiling_wraps_the_image_around_and_is_written_and_read_as_a1111s(engine: DiffusersEngine) -> None:
    from engine.infotext import options_from_infotext, parse_infotext
    from engine.prompts.flags import read_flags

    params = GenerationParams(prompt="a lighthouse", model="builtin:tiny", seed=3, steps=4, sampler="Euler",
                              width=64, height=64)  # fmt: skip
    [plain] = engine.generate(params)
    [tiled] = engine.generate(params.replace(tiling=True))
    [again] = engine.generate(params)
    assert "Tiling: True" in tiled.infotext and "Tiling" not in plain.infotext
    assert not np.array_equal(np.asarray(plain.image), np.asarray(tiled.image))
    assert np.array_equal(np.asarray(plain.image), np.asarray(again.image))  # switched back for the next job
    unet = engine.load("builtin:tiny").pipe.unet
    assert all(m.padding_mode == "zeros" for m in unet.modules() if isinstance(m, torch.nn.Conv2d))
    options, notes = options_from_infotext(parse_infotext(tiled.infotext))
    assert options["tiling"] == "True" and notes == []
    assert read_flags("a brick wall --tile", base_pixels=4096, max_pixels=4096).options == {"tiling": True}
