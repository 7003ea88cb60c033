"""Reply rendering: pure functions, tested without mocks."""

from __future__ import annotations

from bot import render
from engine.jobs import GeneratedImage, JobResult
from engine.params import GenerationParams

PARAMS = GenerationParams(prompt="a red fox in *snow*", model="builtin:tiny", seed=42, steps=20)


def result(infotext: str, count: int = 1) -> JobResult:
    images = tuple(GeneratedImage(b"png%d" % i, 42 + i, infotext, 64, 64) for i in range(count))
    return JobResult(images, infotext, 1.25)


def test_queued_shows_position_seed_and_job_id() -> None:
    text = render.queued("abc123", PARAMS, position=3, ahead=2)
    assert "position 3 in the queue, 2 ahead" in text and "seed 42" in text and "job abc123" in text


def test_queued_first_in_line_says_next_up() -> None:
    assert "next up" in render.queued("abc123", PARAMS, position=1, ahead=0)


def test_queued_shows_the_eta_as_a_discord_relative_timestamp() -> None:
    text = render.queued("abc123", PARAMS, position=3, ahead=2, ready_at=1_700_000_000)
    assert "<t:1700000000:R>" in text


def test_queued_without_an_eta_shows_no_timestamp() -> None:
    assert "<t:" not in render.queued("abc123", PARAMS, position=3, ahead=2)


def test_summary_escapes_markdown_in_the_prompt() -> None:
    assert r"\*snow\*" in render.summary(PARAMS)


def test_progress_bar_counts_steps() -> None:
    assert render.progress_bar(5, 20, cells=4) == "`█░░░` step 5/20"
    assert render.progress_bar(20, 20, cells=4) == "`████` step 20/20"


def test_variation_seed_is_shown_in_the_summary() -> None:
    varied = PARAMS.replace(subseed=7, subseed_strength=0.15)
    assert "variation seed 7 @ 0.15" in render.summary(varied)


def test_img2img_and_hires_fix_are_shown_in_the_summary() -> None:
    assert ", img2img at 0.6 ·" in render.summary(PARAMS.replace(init_image="ab" * 32, denoising_strength=0.6))
    assert ", hires fix → 1024×1024" in render.summary(PARAMS.replace(enable_hr=True, hr_scale=2.0))


def test_finished_puts_the_parameter_text_in_a_code_block() -> None:
    reply = render.finished("abc123", result("a red fox\nSteps: 20, Seed: 42"), ["Hires upscale ignored"])
    assert "```\na red fox\nSteps: 20, Seed: 42\n```" in reply.content
    assert "⚠️ Hires upscale ignored" in reply.content
    assert [u.filename for u in reply.uploads] == ["easel-abc123-0-42.png"]


def test_finished_sends_long_parameter_text_as_an_attachment() -> None:
    long_text = "word " * 500 + "\nSteps: 20, Seed: 42"
    reply = render.finished("abc123", result(long_text))
    assert len(reply.content) <= render.MAX_CONTENT and "attached text file" in reply.content
    assert reply.uploads[-1].filename == "easel-abc123-parameters.txt"
    assert reply.uploads[-1].data == long_text.encode()


def test_finished_never_breaks_out_of_the_code_block() -> None:
    reply = render.finished("abc123", result("a ```fence``` prompt\nSteps: 20"))
    assert "```" not in reply.content and reply.uploads[-1].filename.endswith(".txt")


def test_channel_fallback_mentions_the_requester() -> None:
    reply = render.finished("abc123", result("p\nSteps: 1"), mention="<@1>")
    assert reply.content.startswith("<@1> Done in 1.2 s.")


def test_split_images_respects_request_size_and_file_count() -> None:
    assert render.split_images([100] * 4) == [[0, 1, 2, 3]]
    assert render.split_images([10] * 12, max_files=10) == [[0, 1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11]]
    big = 10 * 1024 * 1024
    assert render.split_images([big, big, big]) == [[0, 1], [2]]
