"""Extra-network tags such as `<lora:name:0.8>`: found, removed from the prompt and returned in order.

A port of A1111 v1.10.1 `modules/extra_networks.py: parse_prompt` and the LoRA argument rules of
`extensions-builtin/Lora/extra_networks_lora.py`. `read_loras` is Easel's one rule for what a LoRA tag is: the
plan, the checks before queueing and the `lora` slash option all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.errors import InvalidParamsError
from engine.prompts.scan import find_extra_networks


@dataclass(frozen=True)
class ExtraNetworkCall:
    """One `<kind:arg1:arg2...>` tag; an argument `k=v` (exactly one `=`) is named, the rest positional."""

    kind: str
    items: tuple[str, ...]
    positional: tuple[str, ...] = field(init=False)
    named: tuple[tuple[str, str], ...] = field(init=False)

    def __post_init__(self) -> None:
        positional: list[str] = []
        named: dict[str, str] = {}
        for item in self.items:
            parts = item.split("=", 2)
            if len(parts) == 2:
                named[parts[0]] = parts[1]
            else:
                positional.append(item)
        object.__setattr__(self, "positional", tuple(positional))
        object.__setattr__(self, "named", tuple(named.items()))

    def arg(self, name: str) -> str | None:
        return dict(self.named).get(name)


@dataclass(frozen=True)
class LoraCall:
    """`<lora:name[:te[:unet[:dyn]]]>` resolved: the UNet multiplier defaults to the text-encoder one."""

    name: str
    te_multiplier: float = 1.0
    unet_multiplier: float = 1.0
    dyn_dim: int | None = None


def parse_extra_networks(prompt: str) -> tuple[str, list[ExtraNetworkCall]]:
    """The prompt without its tags (whitespace untouched: `a, <lora:x:1>, b` -> `a, , b`), and the tags."""
    calls: list[ExtraNetworkCall] = []
    kept: list[str] = []
    pos = 0
    for start, end, kind, arguments in find_extra_networks(prompt):
        calls.append(ExtraNetworkCall(kind, tuple(arguments.split(":"))))
        kept.append(prompt[pos:start])
        pos = end
    kept.append(prompt[pos:])
    return "".join(kept), calls


def lora_call(call: ExtraNetworkCall) -> LoraCall:
    """A1111's LoRA arguments: positional te, unet, dyn, overridden by named `te=`, `unet=`, `dyn=`."""
    tag = f"<{call.kind}:{':'.join(call.items)}>"
    if not call.positional or not call.positional[0]:
        raise InvalidParamsError(f"{tag} names no LoRA; write it like <lora:name:0.8>.")
    te = _number(tag, "te", _argument(call, "te", 1), 1.0)
    unet = _number(tag, "unet", _argument(call, "unet", 2), te)
    dyn_text = _argument(call, "dyn", 3)
    try:
        dyn = int(dyn_text) if dyn_text is not None else None
    except ValueError:
        raise InvalidParamsError(f"{tag}: dyn must be a whole number, not {dyn_text!r}.") from None
    return LoraCall(call.positional[0], te, unet, dyn)


def _argument(call: ExtraNetworkCall, name: str, index: int) -> str | None:
    """The named argument if given, else the positional one at `index`, else None."""
    named = call.arg(name)
    if named is not None:
        return named
    return call.positional[index] if len(call.positional) > index else None


def _number(tag: str, label: str, text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        raise InvalidParamsError(f"{tag}: the {label} multiplier must be a number, not {text!r}.") from None


def read_loras(prompt: str) -> tuple[str, tuple[LoraCall, ...]]:
    """The prompt without its tags, and its LoRA calls in order; InvalidParamsError for a tag Easel cannot honour
    (another kind of extra network, or bad LoRA arguments)."""
    text, calls = parse_extra_networks(prompt)
    loras = []
    for call in calls:
        if call.kind != "lora":
            raise InvalidParamsError(f"<{call.kind}:...> is not supported; only <lora:name:weight> tags are.")
        loras.append(lora_call(call))
    return text, tuple(loras)


def remove_lora(prompt: str, name: str) -> tuple[str, list[str]]:
    """The prompt without the tags that call the LoRA `name` (case forgiven), and the tags removed."""
    removed: list[str] = []
    kept: list[str] = []
    pos = 0
    for start, end, kind, arguments in find_extra_networks(prompt):
        call = ExtraNetworkCall(kind, tuple(arguments.split(":")))
        if call.kind == "lora" and call.positional and call.positional[0].strip().lower() == name.strip().lower():
            removed.append(prompt[start:end])
            kept.append(prompt[pos:start])
            pos = end
    kept.append(prompt[pos:])
    return "".join(kept), removed
