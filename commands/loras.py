"""`/lora list`: the installed LoRAs (A1111 short hash, trigger words, base model) and textual-inversion embeddings,
for anyone, in pages that fit one embed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.ports import EmbeddingView, LoraView
from engine.models.detect import FAMILY_NAMES

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

MAX_DESCRIPTION = 4096  # Discord's cap on an embed's description (6,000 for the whole embed)
MAX_LINE = 300  # one entry's line, so that a page always holds at least one
MAX_WORD = 60  # one trigger word or phrase


def _clean(text: str, limit: int) -> str:
    """User-controlled text (file names, training tags) made safe inside an inline code span on one line."""
    flat = " ".join(text.replace("`", "'").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def lora_line(lora: LoraView) -> str:
    """Name, short hash, the family it was made for (or kohya's base model string where the file does not tell);
    for a file that is not offered, why."""
    if lora.refused is not None:
        line = f"- `{_clean(lora.name, 100)}` — refused: {_clean(lora.refused, 200)}"
        return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"
    parts = [f"`{_clean(lora.name, 100)}`", f"`{lora.short_hash}`" if lora.short_hash else "hash unreadable"]
    if lora.family:
        parts.append(FAMILY_NAMES.get(lora.family, lora.family))
    elif lora.base_model:
        parts.append(_clean(lora.base_model, 40))
    line = "- " + " · ".join(parts)
    if lora.trigger_words:
        line += " — triggers: " + ", ".join(f"`{_clean(word, MAX_WORD)}`" for word in lora.trigger_words)
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


def embedding_line(embedding: EmbeddingView) -> str:
    name = f"`{_clean(embedding.name, 100)}`"
    if embedding.refused is not None:
        line = f"- {name} — refused: {_clean(embedding.refused, 200)}"
    else:
        line = f"- {name} · {embedding.vectors} vector{'' if embedding.vectors == 1 else 's'}"
        if embedding.family:
            line += f" · {FAMILY_NAMES.get(embedding.family, embedding.family)}"
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


@dataclass(frozen=True)
class Page:
    text: str
    entries: int  # LoRA and embedding lines on this page (headers not counted)


@dataclass(frozen=True)
class Section:
    title: str  # repeated, with "(continued)", on every page the section goes on to
    note: str  # after the title on the section's first page
    lines: Sequence[str]  # one entry each; none: the section is its title and note


def paginate(sections: Sequence[Section], limit: int = MAX_DESCRIPTION) -> list[Page]:
    """Sections packed into pages of at most `limit` characters, never splitting an entry's line."""
    pages: list[Page] = []
    text, entries = "", 0
    for section in sections:
        header = f"{section.title}: {section.note}"
        first = True
        lines: Sequence[str | None] = section.lines or [None]
        for line in lines:
            piece = header if line is None else f"{header}\n{line}" if first else line
            gap = "\n\n" if first else "\n"
            if text and len(text) + len(gap) + len(piece) > limit:
                pages.append(Page(text, entries))
                text, entries = "", 0
                if not first:
                    piece = f"{section.title} (continued)\n{line}"
            text = f"{text}{gap}{piece}" if text else piece
            entries += line is not None
            first = False
    if text or not pages:
        pages.append(Page(text, entries))
    return pages


def catalog_pages(
    loras: Sequence[LoraView], embeddings: Sequence[EmbeddingView], limit: int = MAX_DESCRIPTION
) -> list[Page]:
    usable = sum(1 for e in embeddings if e.refused is None)
    lora_note = "the `lora` option of `/imagine`, or `<lora:name:1>` in a prompt" if loras else "none"
    return paginate(
        [
            Section(f"**LoRAs** ({len(loras)})", lora_note, [lora_line(lora) for lora in loras]),
            Section(
                f"**Embeddings** ({usable})",
                "write the name in a prompt" if embeddings else "none",
                [embedding_line(e) for e in embeddings],
            ),
        ],
        limit,
    )


def matches(query: str, *fields: str | None) -> bool:
    typed = query.strip().lower()
    return any(typed in field.lower() for field in fields if field)


class LorasCog(commands.Cog):
    lora = app_commands.Group(name="lora", description="LoRAs and embeddings you can use in prompts")

    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @lora.command(name="list", description="Installed LoRAs (hash, trigger words, base model) and embeddings")
    @app_commands.describe(
        search="Only entries whose name, trigger words or base model contain this",
        page="Which page, when the list is longer than one message",
    )
    async def list_loras(
        self,
        interaction: discord.Interaction[EaselBot],
        search: str | None = None,
        page: app_commands.Range[int, 1, 1000] = 1,
    ) -> None:
        # A LoRA's hash is computed from the whole file the first time: that may outlast Discord's 3 s.
        await interaction.response.defer(ephemeral=True, thinking=True)
        networks = self.bot.networks
        loras = list(await networks.loras())
        embeddings = list(networks.embeddings())
        if search:
            loras = [lora for lora in loras if matches(search, lora.name, lora.base_model, *lora.trigger_words)]
            embeddings = [e for e in embeddings if matches(search, e.name)]
        pages = catalog_pages(loras, embeddings)
        index = min(page, len(pages)) - 1
        title = "LoRAs and embeddings" + (f" matching “{_clean(search, 100)}”" if search else "")
        embed = discord.Embed(title=title, description=pages[index].text)
        if len(pages) > 1:
            left_out = sum(p.entries for p in pages) - pages[index].entries
            hint = f"page:{index + 2}" if index + 1 < len(pages) else "page:1"
            embed.set_footer(
                text=f"Page {index + 1} of {len(pages)} · {left_out} more on other pages: /lora list {hint}"
            )
        await interaction.followup.send(embed=embed, ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(LorasCog(cast("EaselBot", bot)))
