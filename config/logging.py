"""Logging set up once for the whole process; per-module loggers use %-style arguments."""

from __future__ import annotations

import logging


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # diffusers and transformers are chatty at INFO; their warnings still show.
    for noisy in ("diffusers", "transformers", "discord.gateway", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
