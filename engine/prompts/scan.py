"""Linear-time scanners for the few A1111 patterns that Python's regex engine runs in quadratic time on crafted
input (long runs it retries from every position). Each finds exactly what its pattern finds; the tests check that
against the pattern itself."""

from __future__ import annotations

import re
from collections.abc import Iterator

# A1111's patterns (modules/prompt_parser.py, modules/extra_networks.py), kept as the definition of the scanners.
RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
RE_EXTRA_NET = re.compile(r"<(\w+):([^>]+)>")
RE_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")
_RE_NUMBER = re.compile(r"[-+]?(?:\d+\.?|\d*\.\d+)")


def is_word(char: str) -> bool:
    """What the regex `\\w` matches in text."""
    return char.isalnum() or char == "_"


def split_break(text: str) -> list[str]:
    """`RE_BREAK.split(text)`: the pieces between the words `BREAK`, with the whitespace around each dropped."""
    pieces: list[str] = []
    start = search = 0
    n = len(text)
    while (k := text.find("BREAK", search)) >= 0:
        if (k > 0 and is_word(text[k - 1])) or (k + 5 < n and is_word(text[k + 5])):
            search = k + 1
            continue
        j = k
        while j > start and text[j - 1].isspace():
            j -= 1
        end = k + 5
        while end < n and text[end].isspace():
            end += 1
        pieces.append(text[start:j])
        start = search = end
    pieces.append(text[start:])
    return pieces


def find_extra_networks(text: str) -> Iterator[tuple[int, int, str, str]]:
    """(start, end, kind, arguments) of each `RE_EXTRA_NET` match, left to right, never overlapping.

    A tag is `<`, a word, `:`, then at least one character up to the first `>`. Once no `>` is left, no later
    `<` can close either, so the scan stops instead of retrying from every `<` to the end.
    """
    n, pos = len(text), 0
    while (lt := text.find("<", pos)) >= 0:
        k = lt + 1
        while k < n and is_word(text[k]):
            k += 1
        if k == lt + 1 or k >= n or text[k] != ":":
            pos = lt + 1
            continue
        gt = text.find(">", k + 1)
        if gt < 0:
            return
        if gt == k + 1:
            pos = lt + 1
            continue
        yield lt, gt + 1, text[lt + 1 : k], text[k + 1 : gt]
        pos = gt + 1


def split_weight(part: str) -> tuple[str, str | None]:
    """`RE_WEIGHT.search(part).groups()`: an `AND` part's text and its `:weight` suffix, if it has one.

    The pattern's lazy text group stops at the first place from which the rest is `\\s*:\\s*NUMBER\\s*` or only
    whitespace; the first is tried first and, where it fits, starts earlier.
    """
    end = len(part)
    while end > 0 and part[end - 1].isspace():
        end -= 1
    colon = part.rfind(":", 0, end)
    if colon >= 0:
        number = colon + 1
        while number < end and part[number].isspace():
            number += 1
        if number < end and _RE_NUMBER.fullmatch(part, number, end):
            start = colon
            while start > 0 and part[start - 1].isspace():
                start -= 1
            return part[:start], part[number:end]
    return part[:end], None
