"""Pure pieces of LoRA picking: the A1111 tag added to a prompt, and `/lora list` pages within Discord's limits."""

from __future__ import annotations

from commands.loras import Section, embedding_line, lora_line, paginate
from engine.request import with_lora
from tests.fakes import FakeEmbedding, FakeLora


def test_tag_is_appended_after_a_space_with_a1111_number_formatting() -> None:
    notes: list[str] = []
    assert with_lora("a cat", "green", 1.0, notes) == "a cat <lora:green:1>"
    assert with_lora("a cat  ", "green", 0.75, notes) == "a cat <lora:green:0.75>"
    assert with_lora("", "green", -1.5, notes) == "<lora:green:-1.5>"
    assert notes == []


def test_tag_for_the_same_lora_is_replaced_and_others_kept() -> None:
    notes: list[str] = []
    prompt = "a cat <lora:Green:0.2:0.4>, <lora:add-detail:1> <lora:greenish:1>"
    assert with_lora(prompt, "green", 0.9, notes) == "a cat , <lora:add-detail:1> <lora:greenish:1> <lora:green:0.9>"
    assert notes == ["The `lora` option replaced `<lora:Green:0.2:0.4>` in the prompt."]


def test_lines_keep_user_text_inside_code_spans_and_short() -> None:
    line = lora_line(FakeLora("we`ird\nname", "abc", ("x" * 500,), "sd_v1"))
    assert line.startswith("- `we'ird name` · `abc` · SD 1.x — triggers: `xxx")
    assert lora_line(FakeLora("old", "abc", (), "sd_v1", None)) == "- `old` · `abc` · sd_v1"
    assert len(line) <= 300 and "\n" not in line
    assert embedding_line(FakeEmbedding("one", 1)) == "- `one` · 1 vector · SD 1.x"
    assert embedding_line(FakeEmbedding("xl", 2, family="sdxl")) == "- `xl` · 2 vectors · SDXL"


def test_pages_fit_the_limit_and_repeat_the_title_of_a_section_that_goes_on() -> None:
    sections = [Section("**A**", "note", [f"- a{i}" for i in range(30)]), Section("**B**", "none", [])]
    pages = paginate(sections, limit=60)
    assert all(len(page.text) <= 60 for page in pages)
    assert sum(page.entries for page in pages) == 30
    assert pages[0].text.startswith("**A**: note\n- a0")
    assert pages[1].text.startswith("**A** (continued)\n- a")
    assert pages[-1].text.endswith("**B**: none")


def test_everything_on_one_page_when_it_fits() -> None:
    [page] = paginate([Section("**A**", "n", ["- a"]), Section("**B**", "n", ["- b"])])
    assert page.text == "**A**: n\n- a\n\n**B**: n\n- b" and page.entries == 2


def test_a_refused_lora_is_listed_with_its_reason() -> None:
    line = lora_line(FakeLora("old-loha", short_hash=None, refused="it is a LyCORIS LoHa/LoKr/OFT file"))
    assert line == "- `old-loha` — refused: it is a LyCORIS LoHa/LoKr/OFT file"
