"""/imagine's pure helpers: autocomplete matching and the `lora` option."""

from __future__ import annotations

from commands.choices import matching
from commands.imagine import with_lora


def test_matching_puts_prefix_matches_first_and_caps_at_25() -> None:
    names = ["DPM++ 2M", "Euler a", "Euler", "LMS"] + [f"m{i}" for i in range(40)]
    assert [c.value for c in matching(names, "eul")] == ["Euler a", "Euler"]
    assert [c.value for c in matching(["xl-euler", "Euler"], "euler")] == ["Euler", "xl-euler"]
    assert len(matching(names, "")) == 25


def test_the_lora_option_appends_its_tag() -> None:
    notes: list[str] = []
    assert with_lora("a cat", "ink", 0.7, notes) == "a cat <lora:ink:0.7>"
    assert notes == []


def test_the_lora_option_replaces_a_tag_for_the_same_lora_and_says_so() -> None:
    notes: list[str] = []
    assert with_lora("a cat <lora:Ink:0.2> <lora:fur:1>", "ink", 1.0, notes) == "a cat  <lora:fur:1> <lora:ink:1>"
    assert notes == ["The `lora` option replaced `<lora:Ink:0.2>` in the prompt."]
