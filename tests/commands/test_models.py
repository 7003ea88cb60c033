"""/model list's text: usable models with the default marked, refused files with the reason, cut to fit."""

from __future__ import annotations

from commands.models import model_list_text
from tests.fakes import FakeEntry

ENTRIES = [
    FakeEntry("a"),
    FakeEntry("b", "single-file", family="sdxl"),
    FakeEntry("c.ckpt", refused="pickle checkpoint"),
]


def test_lists_usable_with_their_family_then_refused_with_reason() -> None:
    text = model_list_text(ENTRIES, default="b")
    assert text.splitlines() == [
        "**Models** (2 usable)",
        "- `a` (diffusers, SD 1.x)",
        "- `b` (single-file, SDXL) ← default",
        "**Refused** (1)",
        "- `c.ckpt`: pickle checkpoint",
    ]


def test_long_lists_are_cut_to_fit_a_message() -> None:
    many = [FakeEntry(f"model-{i:04d}-" + "x" * 40) for i in range(200)]
    text = model_list_text(many, default="none", limit=2000)
    assert len(text) <= 2000 and text.endswith("more lines")
