"""A stored job asked for again (Reroll, Vary, Upscale, `/show`, jobs resumed after a restart): a request with the
job as its base, resolved again against today's limits and models, because an admin may have changed them since
the job ran. Unchanged params come back equal, seed included."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.params import GenerationParams, Limits
from engine.request import Request

if TYPE_CHECKING:
    from bot.client import EaselBot


async def replay(params: GenerationParams, bot: EaselBot, limits: Limits, **changes: Any) -> GenerationParams:
    """The stored params with `changes` (options), checked as any request is: limits, model, LoRAs and VAE."""
    return (await bot.resolve(Request(options=changes, base=params), limits)).params
