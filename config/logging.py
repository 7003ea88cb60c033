"""Logging set up once for the whole process; per-module loggers use %-style arguments."""

from __future__ import annotations

import logging

# Warnings about packages Easel does not use: transformers' image processors (for the safety checker Easel never
# runs) want torchvision, which cannot import beside the CPU torch wheel.
_UNUSED = ("requires torchvision (not installed)",)


class _DropUnused(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _UNUSED)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # diffusers and transformers are chatty at INFO; their warnings still show.
    for noisy in ("diffusers", "transformers", "discord.gateway", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("transformers.utils.import_utils").addFilter(_DropUnused())
