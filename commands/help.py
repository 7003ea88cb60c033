"""`/help` (the commands, the prompt syntax with examples, this channel's limits) and `/about` (version, models,
where the source is, as the AGPL asks of a network service). The texts are pure functions of plain values."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.layers import CEILING_LABELS, Ceilings
from engine.params import MAX_PROMPT_CHARS
from engine.request import SOURCE_NAMES

if TYPE_CHECKING:
    from bot.client import EaselBot

TOPICS = ("commands", "prompts", "limits")
MAX_FIELD = 1024  # Discord's cap on an embed field's value
MAX_LISTED_MODELS = 10
MAX_LISTED_WORKERS = 8

COMMANDS_TEXT = """\
`/imagine prompt:` draw; options for steps, sampler, size, seed, model, LoRA, VAE, style, img2img, hires fix, detailer
`/imagine parameters:` a block pasted from A1111 or civitai (other options override it)
Buttons: **Reroll**, **Vary**, **Edit**, **Delete**, **Fix faces**; per image **Upscale (Subtle)** (same \
picture) and **(Creative)** (new detail)
`/upscale image:` larger, without redrawing (an upscaler model, Lanczos or Nearest)
`/describe image:` (or Apps → **Describe**) an image's tags as prompts to imagine
`/settings set|show|reset` your defaults (`show`: where each value comes from)
`/info` your queue and jobs · `/show job_id:` post a job again
`/lora list` LoRAs and embeddings · `/style list` this server's styles (`/imagine style:`)
Apps → **Parameters** on any image: its parameters, to run again or edit
`/nsfw show` what is drawn where · `/about` version, models, source code
Admins: `/settings server|channel`, `/style add|remove|import`, `/nsfw set|words`,
`/model list|set|refresh`, `/admin sync`"""

PROMPTS_TEXT = """\
`(word)` ×1.1 · `((word))` ×1.21 · `(word:1.4)` any weight · `[word]` ÷1.1 · `\\(` a literal bracket
`[cat:dog:0.4]` cat for the first 40% of steps, then dog · `[cat:dog:10]` switch at step 10
`[cat:10]` add after step 10 · `[cat::10]` remove after step 10 · `[cat|dog]` alternate every step
`BREAK` starts a new 75-token chunk · `a cat AND a hat` two prompts mixed (`:0.5` weights one)
`<lora:name:0.8>` a LoRA at weight 0.8 (`/lora list` has the names) · an embedding's name uses it
At the end: `--ar 16:9` aspect · `--no text, logo` avoid · `--seed 42` · `--steps 30` · `--cfg 6`"""


def limits_text(here: Ceilings, *, max_side: int, prompt_chars: int = MAX_PROMPT_CHARS) -> str:
    """This channel's limits, each with the layer that set it."""
    lines = [
        f"{label}: **{here.value(key):,}** ({SOURCE_NAMES[here.sources[key]]})" for key, label in CEILING_LABELS.items()
    ]
    lines.append(f"Largest side: **{max_side:,}** px · prompt: **{prompt_chars:,}** characters")
    lines.append(
        f"After hires fix or Upscale: **{here.limits.max_hires_pixels:,}** pixels, "
        f"**{here.limits.max_hires_side:,}** px a side"
    )
    return "\n".join(lines)


def help_fields(topic: str | None, here: Ceilings, *, max_side: int) -> list[tuple[str, str]]:
    """The embed's fields for a topic (all of them when none is chosen)."""
    fields = {
        "commands": ("Commands", COMMANDS_TEXT),
        "prompts": ("Prompt syntax (as in AUTOMATIC1111)", PROMPTS_TEXT),
        "limits": ("Limits here", limits_text(here, max_side=max_side)),
    }
    chosen = [topic] if topic in fields else list(TOPICS)
    return [(fields[name][0], fields[name][1][:MAX_FIELD]) for name in chosen]


def easel_version() -> str:
    try:
        return importlib.metadata.version("easel")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def about_text(
    *,
    version: str,
    models: Sequence[str],
    default: str,
    loaded: Sequence[str],
    source_url: str | None,
    workers: Sequence[str] | None = None,
) -> str:
    """`workers`: one line each for the GPU workers on other machines (None: this bot draws in-process)."""
    listed = ", ".join(f"`{name}`" for name in models[:MAX_LISTED_MODELS])
    more = f" and {len(models) - MAX_LISTED_MODELS} more" if len(models) > MAX_LISTED_MODELS else ""
    lines = [
        f"**Easel {version}**: Stable Diffusion on this server's own GPU, A1111-compatible.",
        f"Models ({len(models)}): {listed}{more}; default `{default}`.",
        f"In memory now: {', '.join(f'`{name}`' for name in loaded) or 'none yet'}.",
    ]
    if workers is not None:
        shown = "; ".join(workers[:MAX_LISTED_WORKERS]) or "none connected: jobs wait until one connects"
        more = f"; and {len(workers) - MAX_LISTED_WORKERS} more" if len(workers) > MAX_LISTED_WORKERS else ""
        lines.append(f"GPU workers ({len(workers)}): {shown}{more}.")
    if source_url:
        lines.append(f"Source code (AGPL-3.0): {source_url}")
    else:
        lines.append("Source code (AGPL-3.0): the owner has not set `EASEL_SOURCE_URL`; ask them for it.")
    return "\n".join(lines)


class HelpCog(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="How to use Easel: commands, prompt syntax, and the limits here")
    @app_commands.describe(topic="Only one part: commands, prompts or limits")
    @app_commands.choices(topic=[app_commands.Choice(name=topic, value=topic) for topic in TOPICS])
    async def help(self, interaction: discord.Interaction[EaselBot], topic: str | None = None) -> None:
        here = self.bot.ceilings_here(interaction)
        embed = discord.Embed(title="Easel help", colour=discord.Colour.blurple())
        for name, value in help_fields(topic, here, max_side=here.limits.max_side):
            embed.add_field(name=name, value=value, inline=False)
        embed.set_footer(text="Paste any A1111 parameter text into /imagine to draw it again.")
        await interaction.response.send_message(embed=embed, ephemeral=True)

    def _default_model(self, guild_id: int | None) -> str:
        stored = None if guild_id is None else self.bot.store.guild_default_model(guild_id)
        return stored or self.bot.registry.default_model(self.bot.settings.default_model)

    @app_commands.command(name="about", description="Easel's version, the models here, and its source code")
    async def about(self, interaction: discord.Interaction[EaselBot]) -> None:
        registry = self.bot.registry
        text = about_text(
            version=easel_version(),
            models=registry.names(),
            default=self._default_model(interaction.guild_id),
            loaded=self.bot.executor.loaded_models(),
            source_url=self.bot.settings.source_url,
            workers=self.bot.executor.worker_lines(),
        )
        await interaction.response.send_message(text, ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(HelpCog(cast("EaselBot", bot)))
