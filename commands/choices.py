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


def matching_list(names: list[str], current: str) -> list[app_commands.Choice[str]]:
    """Autocomplete for a comma-separated list: the last name is completed, the ones before are kept."""
    done, _, typed = current.rpartition(",")
    chosen = [part.strip() for part in done.split(",") if part.strip()]
    prefix = ", ".join(chosen) + ", " if chosen else ""
    left = [name for name in names if name not in chosen]
    return [
        app_commands.Choice(name=(prefix + c.value)[:100], value=(prefix + c.value)[:100])
        for c in matching(left, typed)
    ]
