"""`AND` (composable diffusion): a prompt split into weighted parts, as A1111 `get_multicond_prompt_list`."""

from __future__ import annotations

import re

_RE_AND = re.compile(r"\bAND\b")
_RE_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_and(prompt: str) -> list[tuple[str, float]]:
    """`(text, weight)` per `AND` part; a part may end in `:weight`. Trailing spaces go, leading ones stay.

    >>> split_and("a cat AND a dog:1.5")
    [('a cat', 1.0), (' a dog', 1.5)]
    """
    parts: list[tuple[str, float]] = []
    for part in _RE_AND.split(prompt):
        match = _RE_WEIGHT.search(part)
        if match is None:  # the pattern matches any string; kept for parity with A1111
            parts.append((part, 1.0))
            continue
        text, weight = match.groups()
        parts.append((text, float(weight) if weight is not None else 1.0))
    return parts
