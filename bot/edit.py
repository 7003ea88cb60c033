"""The Edit button's modal: the job's prompt, negative prompt and an A1111-style parameter line, prefilled; the
submitted text is read with the same rules as a pasted parameter block and becomes a new job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import discord

from bot.errors import JOB_ID_KEY, handle_error
from engine.infotext import parameter_line
from engine.params import GenerationParams
from engine.plan import make_plan
from engine.request import Request

if TYPE_CHECKING:
    from bot.client import EaselBot

# parse_infotext reads the last line as parameters only when it holds 3+ `key: value` pairs; a trimmed box must
# still read as parameters. `User` is a key A1111 writes and the reader passes over silently.
_PAD = ", User: -" * 3
MAX_TEXT = 4000  # Discord's cap on a text input's value


def edit_box(params: GenerationParams) -> str:
    """The job's A1111 parameter line, as its images carry it (without the hashes: the box names the model, and the
    init image, a stored file, is not text and is kept as it is)."""
    extra = dict(make_plan(params).infotext_fields)
    return parameter_line(params, model_name=params.model, model_hash=None, extra=extra)


def edit_request(prompt: str, negative_prompt: str, box: str, *, source: GenerationParams) -> Request:
    """The modal's text as a request: the box is read as a pasted block (a key left out takes its default; a
    missing `Seed` means a new random seed), the prompt as a typed one (its flags too). The model is the one the
    box names where it is here, else the job's; the init image and batch size of the job carry over (they are
    not text)."""
    line = ", ".join(part.strip().strip(",") for part in box.splitlines() if part.strip())
    return Request(
        prompt=prompt,
        options={"negative_prompt": negative_prompt, "batch_size": source.batch_size},
        paste=f"\n{line}{_PAD}",
        fallback_model=source.model,
        init_image=source.init_image,
    )


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

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        interaction.extras[JOB_ID_KEY] = self.job_id
        bot = cast("EaselBot", interaction.client)
        request = edit_request(self.prompt.value, self.negative.value, self.parameters.value, source=self.source)
        here = bot.ceilings_here(interaction)
        resolved = await bot.resolve(request, here.limits)
        await bot.runner.start_job(interaction, resolved.params, resolved.notes, max_queued=here.queue_cap)

    async def on_error(self, interaction: discord.Interaction[EaselBot], error: Exception, /) -> None:  # type: ignore[override]
        await handle_error(interaction, error)
