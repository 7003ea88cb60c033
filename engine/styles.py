"""Prompt styles as A1111 has them (`modules/styles.py`, v1.10): pure functions, bounded inputs.

A style is a name, a prompt and a negative prompt. Applying one puts the request's prompt where the style says
`{prompt}`, or appends the style after `, ` when it has no placeholder; several apply in order. A pasted prompt
that already carries a known style has it cut out again (A1111's "Apply if any" paste), so the same styles give
the same prompt. A1111's `styles.csv` (`name,prompt,negative_prompt`, or the older `name,text`) imports as is.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import InvalidParamsError
from engine.params import MAX_PROMPT_CHARS

MAX_STYLES = 100  # per server: also what bounds the paste's extraction (it tries each style against each other)
MAX_STYLE_NAME = 100
MAX_CSV_BYTES = 1 << 20
PLACEHOLDER = "{prompt}"
_SPACES = re.compile("  +")


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def checked_style(name: str, prompt: str, negative_prompt: str) -> Style:
    """A style an admin gives, refused with a clear message when it cannot be stored."""
    name = " ".join(name.split())
    if not name or len(name) > MAX_STYLE_NAME or "," in name:
        raise InvalidParamsError(f"A style name has 1 to {MAX_STYLE_NAME} characters and no comma.")
    for label, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
        if len(text) > MAX_PROMPT_CHARS:
            raise InvalidParamsError(
                f"The style's {label} is {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}."
            )
    if not prompt.strip() and not negative_prompt.strip():
        raise InvalidParamsError("A style needs a prompt, a negative prompt, or both.")
    return Style(name, prompt, negative_prompt)


def merge_prompts(style_prompt: str, prompt: str) -> str:
    """A1111's merge_prompts: the placeholder takes the prompt, else the style is appended after `, `."""
    if PLACEHOLDER in style_prompt:
        return style_prompt.replace(PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def apply_styles(prompt: str, negative_prompt: str, styles: Sequence[Style]) -> tuple[str, str]:
    """The prompt and negative prompt with each style applied in order."""
    for style in styles:
        prompt = merge_prompts(style.prompt, prompt)
        negative_prompt = merge_prompts(style.negative_prompt, negative_prompt)
    return prompt, negative_prompt


def _extract_text(style_text: str, prompt: str) -> tuple[bool, str]:
    """A1111's extract_style_text_from_prompt (runs of spaces count as one; a style with two placeholders, which
    A1111 fails on, matches nothing)."""
    stripped_prompt = _SPACES.sub(" ", prompt.strip())
    stripped_style = _SPACES.sub(" ", style_text.strip())
    if PLACEHOLDER in stripped_style:
        parts = stripped_style.split(PLACEHOLDER)
        if len(parts) == 2:
            left, right = parts
            if stripped_prompt.startswith(left) and stripped_prompt.endswith(right):
                return True, stripped_prompt[len(left) : len(stripped_prompt) - len(right)]
    elif stripped_prompt.endswith(stripped_style):
        rest = stripped_prompt[: len(stripped_prompt) - len(stripped_style)]
        return True, rest[:-2] if rest.endswith(", ") else rest
    return False, prompt


def extract_styles(styles: Sequence[Style], prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
    """A1111's extract_styles_from_prompt: the known styles a (pasted) prompt carries, in the order they were
    applied, and the prompts without them."""
    found: list[str] = []
    left = [style for style in styles[:MAX_STYLES] if style.prompt or style.negative_prompt]
    while True:
        for style in left:
            match_prompt, new_prompt = _extract_text(style.prompt, prompt)
            if not match_prompt:
                continue
            match_negative, new_negative = _extract_text(style.negative_prompt, negative_prompt)
            if match_negative:
                prompt, negative_prompt = new_prompt, new_negative
                left.remove(style)
                found.append(style.name)
                break
        else:
            return list(reversed(found)), prompt, negative_prompt


def resolve_styles(names: str, styles: Sequence[Style]) -> list[Style]:
    """Comma-separated style names (any case) -> the server's styles, or InvalidParamsError naming the closest."""
    by_lower = {style.name.lower(): style for style in styles}
    chosen: list[Style] = []
    for name in (part.strip() for part in names.split(",")):
        if not name:
            continue
        style = by_lower.get(name.lower())
        if style is None:
            close = difflib.get_close_matches(name, [s.name for s in styles], n=3, cutoff=0.4)
            hint = f" Closest: {', '.join(close)}." if close else " `/style list` shows them."
            shown = name if len(name) <= 60 else name[:57] + "..."
            raise InvalidParamsError(f"Unknown style `{shown}`.{hint}")
        if style not in chosen:
            chosen.append(style)
    return chosen


def read_styles_csv(data: bytes) -> list[Style]:
    """A1111's styles.csv (UTF-8 with or without BOM; `name,prompt,negative_prompt` or the old `name,text`), each
    row checked as an admin's style would be; a later row of the same name wins, as in A1111."""
    if len(data) > MAX_CSV_BYTES:
        raise InvalidParamsError(f"The styles file is {len(data):,} bytes; the limit is {MAX_CSV_BYTES:,}.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidParamsError("The styles file is not UTF-8 text (A1111 writes styles.csv as UTF-8).") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    if not reader.fieldnames or "name" not in reader.fieldnames:
        raise InvalidParamsError("The styles file needs a header row with `name,prompt,negative_prompt`.")
    styles: dict[str, Style] = {}
    try:
        for line, row in enumerate(reader, start=2):
            prompt = row.get("prompt") if "prompt" in row else row.get("text")
            name = row.get("name") or ""
            if not name.strip() or name.strip().strip("# ").lower().endswith(".csv"):
                continue  # an empty row, or a divider such as "STYLES.CSV" that newer A1111 writes
            try:
                style = checked_style(name, prompt or "", row.get("negative_prompt") or "")
            except InvalidParamsError as err:
                raise InvalidParamsError(f"Row {line} (`{name[:40]}`): {err}") from None
            styles[style.name] = style
            if len(styles) > MAX_STYLES:
                raise InvalidParamsError(
                    f"The styles file has more than {MAX_STYLES} styles; a server keeps at most that."
                )
    except csv.Error as err:
        raise InvalidParamsError(f"The styles file is not valid CSV: {err}.") from None
    return list(styles.values())
