"""The Edit button's modal: the job's prompt, negative prompt and an A1111-style parameter line, prefilled; the
submitted text is read with the same rules as a pasted parameter block and becomes a new job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import discord

from bot.errors import JOB_ID_KEY, handle_error
from engine.infotext import model_from_infotext, options_from_infotext, parse_infotext, quote
from engine.params import OPTION_KEYS, GenerationParams, build_params

if TYPE_CHECKING:
    from bot.client import EaselBot

# parse_infotext reads the last line as parameters only when it holds 3+ `key: value` pairs; a trimmed box must
# still read as parameters. `User` is a key A1111 writes and the reader passes over silently.
_PAD = ", User: -" * 3
MAX_TEXT = 4000  # Discord's cap on a text input's value


def edit_box(params: GenerationParams) -> str:
    """The parameter line of `params` as A1111 writes it, only what differs from the reader's defaults beyond the
    basics; the init image (a stored file) is not text and is kept as it is."""
    fields: dict[str, Any] = {"Steps": params.steps, "Sampler": params.sampler}
    if params.schedule != "Automatic":
        fields["Schedule type"] = params.schedule
    fields |= {"CFG scale": f"{params.cfg_scale:g}", "Seed": params.seed, "Size": f"{params.width}x{params.height}"}
    fields["Model"] = params.model
    if params.subseed_strength > 0:
        fields |= {"Variation seed": params.subseed, "Variation seed strength": f"{params.subseed_strength:g}"}
    if params.clip_skip > 1:
        fields["Clip skip"] = params.clip_skip
    if params.denoising_strength is not None:
        fields["Denoising strength"] = f"{params.denoising_strength:g}"
    if params.enable_hr:
        if params.hr_resize_x or params.hr_resize_y:
            fields["Hires resize"] = f"{params.hr_resize_x}x{params.hr_resize_y}"
        else:
            fields["Hires upscale"] = f"{params.hr_scale:g}"
        if params.hr_steps:
            fields["Hires steps"] = params.hr_steps
        fields["Hires upscaler"] = params.hr_upscaler
    if params.rng != "GPU":
        fields["RNG"] = params.rng
    if params.ensd:
        fields["ENSD"] = params.ensd
    return ", ".join(f"{key}: {quote(str(value))}" for key, value in fields.items())


def read_edit(
    prompt: str, negative_prompt: str, box: str, *, source: GenerationParams
) -> tuple[dict[str, Any], str | None, list[str]]:
    """The modal's text -> (build_params options, the model the box names, notes for the user).

    As with a pasted block, a key left out takes its default; a missing `Seed` means a new random seed. The
    init image and batch size of the source job carry over (they are not text).
    """
    line = ", ".join(part.strip().strip(",") for part in box.splitlines() if part.strip())
    fields = parse_infotext(f"-\n{line}{_PAD}")
    raw, raw_notes = options_from_infotext(fields, init_image=source.init_image)
    options = dict(raw)
    notes = [str(note) for note in raw_notes]
    for key in sorted(set(options) - OPTION_KEYS):
        notes.append(f"Ignored `{key}`: not supported here.")
        del options[key]
    options |= {"prompt": prompt, "negative_prompt": negative_prompt, "batch_size": source.batch_size}
    return options, model_from_infotext(fields).name, notes


class EditModal(discord.ui.Modal, title="Edit and draw again"):
    def __init__(self, job_id: str, params: GenerationParams) -> None:
        super().__init__(timeout=15 * 60, custom_id=f"easel:editform:{job_id}")
        self.job_id = job_id
        self.source = params
        self.prompt = discord.ui.TextInput[discord.ui.Modal](
            style=discord.TextStyle.paragraph, default=params.prompt[:MAX_TEXT], max_length=MAX_TEXT, required=False
        )
        self.negative = discord.ui.TextInput[discord.ui.Modal](
            style=discord.TextStyle.paragraph,
            default=params.negative_prompt[:MAX_TEXT],
            max_length=MAX_TEXT,
            required=False,
        )
        self.parameters = discord.ui.TextInput[discord.ui.Modal](
            style=discord.TextStyle.paragraph, default=edit_box(params), max_length=MAX_TEXT, required=False
        )
        self.add_item(discord.ui.Label(text="Prompt", component=self.prompt))
        self.add_item(discord.ui.Label(text="Negative prompt", component=self.negative))
        self.add_item(
            discord.ui.Label(
                text="Parameters",
                description="A1111 style, e.g. Steps: 30, Sampler: Euler a, Seed: -1 (random), Size: 512x768",
                component=self.parameters,
            )
        )

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        interaction.extras[JOB_ID_KEY] = self.job_id
        bot = cast("EaselBot", interaction.client)
        options, model, notes = read_edit(
            self.prompt.value, self.negative.value, self.parameters.value, source=self.source
        )
        model_name = bot.registry.resolve(model or self.source.model).name
        params = build_params(
            options, model=model_name, limits=bot.limits, defaults=bot.registry.defaults_for(model_name)
        )
        await bot.runner.start_job(interaction, params, notes)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await handle_error(interaction, error)
