"""Autocomplete choices, shared by the commands that complete names (models, samplers, LoRAs...)."""

from __future__ import annotations

from discord import app_commands

MAX_CHOICES = 25  # Discord's cap on autocomplete choices


def matching(names: list[str], current: str) -> list[app_commands.Choice[str]]:
    """Autocomplete choices: names starting with what was typed first, then names containing it."""
    typed = current.strip().lower()
    starts = [n for n in names if n.lower().startswith(typed)]
    contains = [n for n in names if typed in n.lower() and n not in starts]
    return [app_commands.Choice(name=n[:100], value=n[:100]) for n in (starts + contains)[:MAX_CHOICES]]
