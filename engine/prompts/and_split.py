"""`AND` (composable diffusion): a prompt split into weighted parts, as A1111 `get_multicond_prompt_list`."""

from __future__ import annotations

import re

from engine.prompts.scan import split_weight

_RE_AND = re.compile(r"\bAND\b")


def split_and(prompt: str) -> list[tuple[str, float]]:
    """`(text, weight)` per `AND` part; a part may end in `:weight`. Trailing spaces go, leading ones stay.

    >>> split_and("a cat AND a dog:1.5")
    [('a cat', 1.0), (' a dog', 1.5)]
    """
    parts: list[tuple[str, float]] = []
    for part in _RE_AND.split(prompt):
        text, weight = split_weight(part)
        parts.append((text, float(weight) if weight is not None else 1.0))
    return parts
