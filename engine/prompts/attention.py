"""A1111's emphasis parser (`parse_prompt_attention`): `(a)`, `[a]`, `(a:1.3)`, escapes and `BREAK`.

A port of A1111 v1.10.1 `modules/prompt_parser.py`, quirks included (a lone backslash is swallowed,
unbalanced brackets run to the end of the prompt). The changes: where A1111 crashes on a weight such as
`1.2.3`, we raise InvalidParamsError with a message the user can act on, and so we do for brackets nested more
than MAX_NESTING deep (A1111's cost grows with depth times length).
"""

from __future__ import annotations

import re

from engine.errors import InvalidParamsError
from engine.prompts.editing import MAX_NESTING, nesting_error
from engine.prompts.scan import split_break

# Tried in this order; verbose mode, exactly as A1111 writes it.
_RE_ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)

ROUND_BRACKET_MULTIPLIER = 1.1
SQUARE_BRACKET_MULTIPLIER = 1 / 1.1


def parse_prompt_attention(text: str) -> list[list[str | float]]:
    """Split `text` into `[piece, weight]` pairs; `["BREAK", -1]` marks a chunk break.

    >>> parse_prompt_attention("an (important) word")
    [['an ', 1.0], ['important', 1.1], [' word', 1.0]]
    """
    res: list[list[str | float]] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start_position: int, multiplier: float) -> None:
        for p in range(start_position, len(res)):
            weight = res[p][1]
            assert isinstance(weight, float | int)
            res[p][1] = weight * multiplier

    for m in _RE_ATTENTION.finditer(text):
        piece = m.group(0)
        weight = m.group(1)

        if piece.startswith("\\"):
            res.append([piece[1:], 1.0])
        elif piece in {"(", "["}:
            (round_brackets if piece == "(" else square_brackets).append(len(res))
            # Each closing bracket re-weights everything since its opening: depth bounds that work per piece.
            if len(round_brackets) + len(square_brackets) > MAX_NESTING:
                raise nesting_error()
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), _weight(weight, piece))
        elif piece == ")" and round_brackets:
            multiply_range(round_brackets.pop(), ROUND_BRACKET_MULTIPLIER)
        elif piece == "]" and square_brackets:
            multiply_range(square_brackets.pop(), SQUARE_BRACKET_MULTIPLIER)
        else:
            for i, part in enumerate(split_break(piece)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])

    for pos in round_brackets:
        multiply_range(pos, ROUND_BRACKET_MULTIPLIER)
    for pos in square_brackets:
        multiply_range(pos, SQUARE_BRACKET_MULTIPLIER)

    if not res:
        res = [["", 1.0]]

    # Merge runs of exactly equal weights, as A1111 does (float equality, not a tolerance): A1111 pops and
    # concatenates pair by pair, quadratic in the pieces (`::::` makes one per colon); a run is joined once here.
    runs: list[tuple[list[str], str | float]] = []
    for chunk, multiplier in res:
        if runs and runs[-1][1] == multiplier:
            runs[-1][0].append(str(chunk))
        else:
            runs.append(([str(chunk)], multiplier))
    return [["".join(texts), multiplier] for texts, multiplier in runs]


def _weight(number: str, piece: str) -> float:
    try:
        return float(number)
    except ValueError:
        # A1111 raises a bare ValueError here and the whole generation fails.
        raise InvalidParamsError(
            f"{piece!r} in the prompt has a weight that is not a number; write it like (word:1.2)."
        ) from None
