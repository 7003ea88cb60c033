"""What a tagger saw, as a plain value that travels (the job's result, the wire, the job store's suggestions): the
ratings and tags, and the prompt suggestions made from them. Pure: no numpy, so the transport can load it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_SUGGESTIONS = 4
MAX_SUGGESTION_TAGS = 40  # tags in one suggested prompt


@dataclass(frozen=True)
class Description:
    """What a tagger saw: the four rating probabilities, and the general and character tags over their thresholds
    (as prompt text), most confident first."""

    ratings: tuple[tuple[str, float], ...]
    general: tuple[tuple[str, float], ...]
    character: tuple[tuple[str, float], ...] = ()
    tagger: str = ""
    # Wider bands for the suggestions: general tags between half the threshold and the threshold.
    maybe: tuple[tuple[str, float], ...] = field(default=())

    @property
    def rating(self) -> str:
        """The most probable rating."""
        return max(self.ratings, key=lambda pair: pair[1])[0] if self.ratings else "general"

    def prompt(self) -> str:
        """The tags as one prompt: characters first, then the general tags."""
        return ", ".join(tag for tag, _ in (*self.character, *self.general))

    def suggestions(self) -> list[str]:
        """Up to four prompts, Midjourney's `/describe` way: every confident tag; the characters and the most
        confident half; the confident tags with the less certain ones; the ten most confident."""
        characters = [tag for tag, _ in self.character]
        confident = [tag for tag, _ in self.general]
        wider = confident + [tag for tag, _ in self.maybe]
        candidates = [
            characters + confident,
            characters + confident[: max(1, (len(confident) + 1) // 2)],
            characters + wider,
            characters + confident[:10],
        ]
        found: list[str] = []
        for tags in candidates:
            text = ", ".join(tags[:MAX_SUGGESTION_TAGS])
            if text and text not in found:
                found.append(text)
        return found[:MAX_SUGGESTIONS]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ratings": [list(p) for p in self.ratings], "general": [list(p) for p in self.general],
            "character": [list(p) for p in self.character], "tagger": self.tagger,
            "maybe": [list(p) for p in self.maybe],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Description:
        def pairs(key: str) -> tuple[tuple[str, float], ...]:
            return tuple((str(tag), float(p)) for tag, p in data.get(key, ()))

        return cls(pairs("ratings"), pairs("general"), pairs("character"), str(data.get("tagger", "")), pairs("maybe"))
