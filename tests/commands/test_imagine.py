"""/imagine's pure helpers: autocomplete matching (the `lora` option is tested with the resolver)."""

from __future__ import annotations

from commands.choices import matching


def test_matching_puts_prefix_matches_first_and_caps_at_25() -> None:
    names = ["DPM++ 2M", "Euler a", "Euler", "LMS"] + [f"m{i}" for i in range(40)]
    assert [c.value for c in matching(names, "eul")] == ["Euler a", "Euler"]
    assert [c.value for c in matching(["xl-euler", "Euler"], "euler")] == ["Euler", "xl-euler"]
    assert len(matching(names, "")) == 25
