"""Prompt styles against A1111's rules (modules/styles.py, v1.10) on example prompts."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidParamsError
from engine.styles import (
    MAX_STYLES,
    Style,
    apply_styles,
    extract_styles,
    merge_prompts,
    read_styles_csv,
    resolve_styles,
)

CINEMATIC = Style("cinematic", "cinematic still of {prompt}, shallow depth of field", "cartoon, drawing")
PAINTERLY = Style("painterly", "oil painting, brush strokes", "photo")


def test_a_placeholder_takes_the_prompt_else_the_style_is_appended() -> None:
    assert merge_prompts("cinematic still of {prompt}, film grain", "a cat") == "cinematic still of a cat, film grain"
    assert merge_prompts("oil painting", " a cat ") == "a cat, oil painting"
    assert merge_prompts("oil painting", "") == "oil painting"
    assert merge_prompts("", "a cat") == "a cat"
    assert merge_prompts("{prompt} and {prompt}", "x") == "x and x"  # str.replace, every placeholder


def test_styles_apply_in_order_to_both_prompts() -> None:
    prompt, negative = apply_styles("a cat", "blurry", [CINEMATIC, PAINTERLY])
    assert prompt == "cinematic still of a cat, shallow depth of field, oil painting, brush strokes"
    assert negative == "blurry, cartoon, drawing, photo"
    assert apply_styles("a cat", "", [PAINTERLY, CINEMATIC]) == (
        "cinematic still of a cat, oil painting, brush strokes, shallow depth of field",
        "photo, cartoon, drawing",
    )


def test_a_pasted_prompt_gives_its_styles_back_in_the_order_applied() -> None:
    prompt, negative = apply_styles("a cat", "blurry", [CINEMATIC, PAINTERLY])
    assert extract_styles([PAINTERLY, CINEMATIC], prompt, negative) == (["cinematic", "painterly"], "a cat", "blurry")
    # Runs of spaces count as one, as in A1111; a prompt without the style text keeps it unknown.
    assert extract_styles([PAINTERLY], "a cat,   oil painting, brush strokes", "photo") == (["painterly"], "a cat", "")
    assert extract_styles([PAINTERLY], "a cat, oil painting", "photo") == ([], "a cat, oil painting", "photo")
    # A1111 crashes on a style with two placeholders; here it just never matches.
    assert extract_styles([Style("twice", "{prompt} {prompt}")], "x x", "") == ([], "x x", "")


@settings(max_examples=60, deadline=None)
@given(
    st.text(alphabet="abc ,()", max_size=30),
    st.text(alphabet="abc ,", max_size=20),
    st.lists(st.sampled_from([CINEMATIC, PAINTERLY]), unique=True),
)
def test_applying_what_was_extracted_gives_the_same_prompts(prompt: str, negative: str, styles: list[Style]) -> None:
    styled = apply_styles(prompt, negative, styles)
    names, bare_prompt, bare_negative = extract_styles([CINEMATIC, PAINTERLY], *styled)
    again = apply_styles(bare_prompt, bare_negative, resolve_styles(", ".join(names), [CINEMATIC, PAINTERLY]))
    assert " ".join(again[0].split()) == " ".join(styled[0].split())


def test_extraction_stays_fast_at_the_limits() -> None:
    styles = [Style(f"s{i}", f"style text {i} " * 20, "") for i in range(MAX_STYLES)]
    prompt = ", ".join(["word"] * 800)[:4000]
    start = time.perf_counter()
    extract_styles(styles, prompt, "")
    assert time.perf_counter() - start < 0.5  # generous for a busy CI machine; typically a few ms


def test_unknown_style_names_come_with_the_closest() -> None:
    assert resolve_styles("Cinematic, painterly, cinematic", [CINEMATIC, PAINTERLY]) == [CINEMATIC, PAINTERLY]
    with pytest.raises(InvalidParamsError, match=r"Unknown style `cinematc`\. Closest: cinematic\."):
        resolve_styles("cinematc", [CINEMATIC, PAINTERLY])


def test_a1111_styles_csv_imports_with_its_quirks() -> None:
    data = (
        "\ufeffname,prompt,negative_prompt\n"
        '"cinematic","cinematic still of {prompt}, shallow depth of field","cartoon, drawing"\n'
        "# STYLES.CSV,,\n"
        ",,\n"
        'painterly,"oil painting, brush strokes",photo\n'
        "painterly,watercolor,\n"
    ).encode()
    assert read_styles_csv(data) == [CINEMATIC, Style("painterly", "watercolor", "")]  # a later row wins
    assert read_styles_csv(b"name,text\nold,an old style\n") == [Style("old", "an old style", "")]
    with pytest.raises(InvalidParamsError, match="needs a header row"):
        read_styles_csv(b"cinematic,a,b\n")
    with pytest.raises(InvalidParamsError, match="not UTF-8"):
        read_styles_csv(b"name,prompt\n\xff\xfe,x\n")
    with pytest.raises(InvalidParamsError, match="more than 100 styles"):
        read_styles_csv(("name,prompt\n" + "".join(f"s{i},p\n" for i in range(101))).encode())
    with pytest.raises(InvalidParamsError, match="Row 2"):
        read_styles_csv(b"name,prompt\nempty,\n")
