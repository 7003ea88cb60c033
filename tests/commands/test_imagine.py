"""/imagine's pure helpers: autocomplete matching and reading a pasted parameter block."""

from __future__ import annotations

from commands.imagine import matching, read_pasted


def test_matching_puts_prefix_matches_first_and_caps_at_25() -> None:
    names = ["DPM++ 2M", "Euler a", "Euler", "LMS"] + [f"m{i}" for i in range(40)]
    assert [c.value for c in matching(names, "eul")] == ["Euler a", "Euler"]
    assert [c.value for c in matching(["xl-euler", "Euler"], "euler")] == ["Euler", "xl-euler"]
    assert len(matching(names, "")) == 25


def test_read_pasted_gives_options_model_and_notes() -> None:
    block = (
        "a cat\nNegative prompt: blurry\nSteps: 5, Sampler: Euler a, Seed: 7, Size: 64x96, Model: anime-v3, "
        "ENSD: 31337, Face restoration: CodeFormer"
    )
    options, model, notes = read_pasted(block)
    assert options["prompt"] == "a cat" and options["negative_prompt"] == "blurry"
    assert (options["steps"], options["seed"], options["width"], options["height"]) == ("5", "7", "64", "96")
    assert model == "anime-v3"
    assert options["ensd"] == "31337"
    assert any("Face restoration" in note for note in notes)
