"""The one way a pasted A1111/civitai parameter block is read (by `/imagine`, the Edit form and the CLI), and the one
rule for the model it names: that model where this server has it (by hash, then by name), else a fallback, said
in a note."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from engine.errors import InvalidParamsError
from engine.infotext import ZERO_TERMINAL_SNR, ModelHint, model_from_infotext, options_from_infotext, parse_infotext
from engine.params import MAX_PROMPT_CHARS

# A prompt and a negative prompt at their limit, and room for the longest parameter lines A1111 writes.
MAX_PASTE_CHARS = 2 * MAX_PROMPT_CHARS + 4000


@dataclass(frozen=True)
class Pasted:
    """What a pasted block asks for: `build_params` options, the model it names, and notes for the user about
    every field that is not honoured."""

    options: dict[str, Any]
    model: ModelHint
    notes: tuple[str, ...]
    zero_terminal_snr: bool = False  # `Noise Schedule: Zero Terminal SNR`: made with a ZTSNR-trained checkpoint


class ModelMatcher(Protocol):
    """The registry's side of the model rule (`ModelRegistry.match`)."""

    def match(self, hint: ModelHint) -> str | None: ...


def read_pasted(text: str, *, init_image: str | None = None) -> Pasted:
    """A pasted block -> options, model hint and notes. With `init_image` it is an img2img paste: `Denoising
    strength` is the img2img strength (see `options_from_infotext`)."""
    if len(text) > MAX_PASTE_CHARS:
        raise InvalidParamsError(
            f"The pasted parameters are {len(text):,} characters; the limit is {MAX_PASTE_CHARS:,}."
        )
    fields = parse_infotext(text)
    options, notes = options_from_infotext(fields, init_image=init_image)
    ztsnr = str(fields.get("Noise Schedule", "")).strip().lower() == ZERO_TERMINAL_SNR.lower()
    return Pasted(options, model_from_infotext(fields), tuple(notes), ztsnr)


def pasted_model(models: ModelMatcher, hint: ModelHint, fallback: str) -> tuple[str, str | None]:
    """The model to use for a pasted block and, when it is not the pasted one, a note saying so."""
    found = models.match(hint)
    if found is not None:
        return found, None
    named = hint.name or hint.hash
    if named is None:
        return fallback, None
    return fallback, f"The pasted model `{named}` is not available here; used `{fallback}`."
