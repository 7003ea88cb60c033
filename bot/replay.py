"""Stored params back through `build_params`: checked again against today's limits and models, because an admin
may have changed them since the job ran (Reroll, Vary, Upscale, Edit, and jobs resumed after a restart)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.params import OPTION_KEYS, GenerationParams, Limits, build_params

if TYPE_CHECKING:
    from bot.client import EaselBot


def stored_options(params: GenerationParams) -> dict[str, Any]:
    """Every option build_params reads, as the stored params hold it (a resolved seed, a blob hash...)."""
    return {name: getattr(params, name) for name in OPTION_KEYS}


def replay(params: GenerationParams, bot: EaselBot, limits: Limits, **changes: Any) -> GenerationParams:
    """Stored params with `changes`, validated again against the limits where they run now (a channel's ceilings
    may have been lowered); unchanged params come back equal."""
    model = bot.registry.resolve(params.model).name
    options = stored_options(params) | changes
    return build_params(options, model=model, limits=limits, defaults=bot.registry.defaults_for(model))
