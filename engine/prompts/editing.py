r"""Prompt editing `[from:to:when]` and alternation `[a|b]`: which plain text applies at which sampling step.

A hand-written parser for the lark grammar of A1111 v1.10.1 (`modules/prompt_parser.py`); Easel needs no lark:

    start: (prompt | /[][():]/+)*
    prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
    emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
    scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
    alternate: "[" prompt ("|" [prompt])+ "]"
    plain: /([^\\\[\]():|]|\\.)+/

Inside a bracket everything must nest, so a bracket that opens a construct has one possible extent, and its
kind follows from its separators; only the top level may hold stray `[ ] ( ) :`, and there A1111's Earley parser
prefers the construct (`a [b:3]` edits the prompt). Emphasis brackets stay text for the emphasis parser.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from engine.errors import InvalidParamsError

# lark's common.SIGNED_NUMBER: optional sign, INT or DECIMAL (`1.`, `.5`, `1.5`), optional exponent.
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
_RE_WHEN = re.compile(rf"\s*({_NUMBER})\s*")

# Limits of Easel's own (A1111 has none): within them a prompt at the length limit parses in milliseconds, and a
# job never has more distinct texts to encode than steps.
MAX_NESTING = 32  # brackets inside brackets, emphasis included (engine.prompts.attention counts the same way)
MAX_EDITS = 100  # prompt-editing and alternation brackets in one prompt
MAX_ALTERNATIVES = 50  # options of one `[a|b|...]`


@dataclass
class _Scheduled:
    before: list[_Node] | None
    after: list[_Node]
    number: str
    when: int = 0


@dataclass
class _Alternate:
    options: list[list[_Node]]


_Node = str | _Scheduled | _Alternate


class _NoParseError(Exception):
    """The prompt does not match the grammar; A1111 then uses it unchanged for every step."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.constructs: dict[int, tuple[_Node | list[_Node], int] | None] = {}

    def parse(self) -> list[_Node]:
        """`start`: prompts, with stray brackets and colons allowed between them."""
        text, out, pos = self.text, list[_Node](), 0
        while pos < len(text):
            char = text[pos]
            if char in "([":
                found = self.construct(pos, 0)
                if found is not None:
                    node, pos = found
                    _add(out, node)
                    continue
                out.append(char)
                pos += 1
            elif char in "]):":
                out.append(char)
                pos += 1
            elif char == "|":
                raise _NoParseError  # only an alternate may hold a `|`
            else:
                end = self.plain(pos)
                if end == pos:
                    raise _NoParseError  # a backslash at the end or before a newline matches nothing
                out.append(text[pos:end])
                pos = end
        return out

    def plain(self, pos: int) -> int:
        """End of the plain/whitespace run at `pos` (`\\x` escapes any character but a newline)."""
        text = self.text
        while pos < len(text):
            char = text[pos]
            if char == "\\":
                if pos + 1 >= len(text) or text[pos + 1] == "\n":
                    break
                pos += 2
            elif char in "[]():|":
                break
            else:
                pos += 1
        return pos

    def prompt(self, pos: int, depth: int) -> tuple[list[_Node], int]:
        """The longest `prompt` at `pos`: up to a separator, a closing bracket or anything it cannot take."""
        out: list[_Node] = []
        while pos < len(self.text):
            char = self.text[pos]
            if char in "([":
                found = self.construct(pos, depth + 1)
                if found is None:
                    break
                node, pos = found
                _add(out, node)
            else:
                end = self.plain(pos)
                if end == pos:
                    break
                out.append(self.text[pos:end])
                pos = end
        return out, pos

    def construct(self, pos: int, depth: int) -> tuple[_Node | list[_Node], int] | None:
        """The emphasized/scheduled/alternate bracket opening at `pos` and its end, or None."""
        if pos in self.constructs:
            return self.constructs[pos]
        if depth >= MAX_NESTING:
            raise nesting_error()
        found = self._round(pos, depth) if self.text[pos] == "(" else self._square(pos, depth)
        self.constructs[pos] = found
        return found

    def _round(self, pos: int, depth: int) -> tuple[list[_Node], int] | None:
        text = self.text
        first, end = self.prompt(pos + 1, depth)
        if end < len(text) and text[end] == ")":
            return ["(", *first, ")"], end + 1
        if end < len(text) and text[end] == ":":
            second, end2 = self.prompt(end + 1, depth)
            if end2 < len(text) and text[end2] == ")":
                return ["(", *first, ":", *second, ")"], end2 + 1
        return None

    def _square(self, pos: int, depth: int) -> tuple[_Node | list[_Node], int] | None:
        text = self.text
        parts: list[list[_Node]] = []
        starts: list[int] = []
        separators: list[str] = []
        end = pos + 1
        while True:
            starts.append(end)
            part, end = self.prompt(end, depth)
            parts.append(part)
            if end >= len(text) or text[end] not in "]:|":
                return None
            if text[end] == "]":
                break
            separators.append(text[end])
            end += 1
        closing = end + 1
        if not separators:
            return ["[", *parts[0], "]"], closing
        if all(sep == "|" for sep in separators):
            return _Alternate(parts), closing
        if all(sep == ":" for sep in separators) and len(separators) <= 2:
            when = _RE_WHEN.fullmatch(text, starts[-1], end)
            if when is None:
                return None
            before = parts[0] if len(parts) == 3 else None
            return _Scheduled(before, parts[-2], when.group(1)), closing
        return None


def nesting_error() -> InvalidParamsError:
    return InvalidParamsError(
        f"The prompt nests brackets more than {MAX_NESTING} deep (brackets never closed count too); "
        "simplify it, or write a literal bracket as \\( or \\[."
    )


def _check_limits(found: list[_Scheduled | _Alternate]) -> None:
    if len(found) > MAX_EDITS:
        raise InvalidParamsError(
            f"The prompt has {len(found)} prompt-editing or alternation brackets; the limit is {MAX_EDITS}."
        )
    for node in found:
        if isinstance(node, _Alternate) and len(node.options) > MAX_ALTERNATIVES:
            raise InvalidParamsError(
                f"A [a|b|...] alternation in the prompt has {len(node.options)} options; "
                f"the limit is {MAX_ALTERNATIVES}."
            )


def _add(out: list[_Node], node: _Node | list[_Node]) -> None:
    # An emphasized bracket is just text around its content, so it is spliced in flat.
    if isinstance(node, list):
        out.extend(node)
    else:
        out.append(node)


def _walk(nodes: list[_Node]) -> list[_Scheduled | _Alternate]:
    found: list[_Scheduled | _Alternate] = []
    for node in nodes:
        if isinstance(node, _Scheduled):
            found.append(node)
            found += _walk(node.before or [])
            found += _walk(node.after)
        elif isinstance(node, _Alternate):
            found.append(node)
            for option in node.options:
                found += _walk(option)
    return found


def _render(nodes: list[_Node], step: int) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Scheduled):
            chosen = (node.before or []) if step <= node.when else node.after
            out.append(_render(chosen, step))
        else:
            out.append(_render(node.options[(step - 1) % len(node.options)], step))
    return "".join(out)


def _when(number: str, steps: int, int_offset: int, flt_offset: float, use_old_scheduling: bool) -> int:
    v = float(number)
    if use_old_scheduling:
        v = v * steps if v < 1 else v
    elif "." in number:
        v = (v - flt_offset) * steps
    else:
        v = v - int_offset
    if math.isinf(v):  # A1111 crashes on int(inf) (`[a:1e999]`); the intent is "never" or "always".
        return steps if v > 0 else -1
    return min(steps, int(v))


def get_learned_conditioning_prompt_schedules(
    prompts: list[str],
    base_steps: int,
    hires_steps: int | None = None,
    use_old_scheduling: bool = False,
) -> list[list[list[int | str]]]:
    """For each prompt, `[end_step, text]` pairs: `text` applies up to and including `end_step`.

    `base_steps` is in A1111's step units (`total_steps`: doubled for second-order samplers). With
    `hires_steps`, the schedule is for the hires pass: integers are offset by `base_steps`, fractions run 1.0-2.0.
    """
    if hires_steps is None or use_old_scheduling:
        int_offset, flt_offset, steps = 0, 0.0, base_steps
    else:
        int_offset, flt_offset, steps = base_steps, 1.0, hires_steps

    def schedule(prompt: str) -> list[list[int | str]]:
        try:
            tree = _Parser(prompt).parse()
        except _NoParseError:
            return [[steps, prompt]]
        boundaries = {steps}
        found = _walk(tree)
        _check_limits(found)
        for node in found:
            if isinstance(node, _Scheduled):
                node.when = _when(node.number, steps, int_offset, flt_offset, use_old_scheduling)
                if node.when >= 1:
                    boundaries.add(node.when)
            else:
                boundaries.update(range(1, steps + 1))
        return [[step, _render(tree, step)] for step in sorted(boundaries)]

    cache = {prompt: schedule(prompt) for prompt in set(prompts)}
    return [[list(entry) for entry in cache[prompt]] for prompt in prompts]


def prompt_schedule(prompt: str, steps: int) -> list[tuple[int, str]]:
    """One prompt's schedule as `(end_step, text)` pairs; see get_learned_conditioning_prompt_schedules."""
    [schedule] = get_learned_conditioning_prompt_schedules([prompt], steps)
    return [(int(end), str(text)) for end, text in schedule]
