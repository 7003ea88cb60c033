"""The NSFW policy, pure: which prompts a server keeps to age-restricted channels, and what happens elsewhere.

A prompt is flagged when its positive prompt contains a word or phrase of the server's list (whole words, any
case; `_`, punctuation and weights do not hide one; the negative prompt is never read, since it often names what
to avoid). In an age-restricted channel a flagged prompt is drawn when the server allows it there; elsewhere
(and in DMs) the configured behaviour holds: refuse it, post it behind a spoiler, or allow it. Easel ships no
safety-checker model: the word list is the whole policy (see the README).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.errors import InvalidParamsError

Outside = Literal["refuse", "spoiler", "allow"]
OUTSIDE_CHOICES: tuple[Outside, ...] = ("refuse", "spoiler", "allow")
MAX_WORDS = 200
MAX_WORD_CHARS = 50
# A starting list an admin edits with /nsfw words; deliberately short and explicit.
DEFAULT_WORDS = (
    "nsfw", "nude", "nudity", "naked", "topless", "nipples", "genitals", "penis", "vagina", "pussy", "sex",
    "porn", "hentai", "explicit", "lewd", "cum", "erotic",
)  # fmt: skip
_NON_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Policy:
    outside: Outside = "refuse"  # outside age-restricted channels, and in DMs
    in_age_restricted: bool = True  # flagged prompts are drawn in age-restricted channels
    words: tuple[str, ...] = field(default=DEFAULT_WORDS)
    # `/describe`: an image its tagger rates questionable or explicit counts as NSFW (off unless an admin turns it on)
    rating: bool = False

    def stored(self) -> dict[str, Any]:
        return {"outside": self.outside, "in_age_restricted": self.in_age_restricted, "words": list(self.words),
                "rating": self.rating}  # fmt: skip

    @classmethod
    def from_stored(cls, data: Mapping[str, Any], default_outside: Outside) -> Policy:
        outside = data.get("outside", default_outside)
        return cls(
            outside=outside if outside in OUTSIDE_CHOICES else default_outside,
            in_age_restricted=bool(data.get("in_age_restricted", True)),
            words=tuple(data["words"]) if "words" in data else DEFAULT_WORDS,
            rating=bool(data.get("rating", False)),
        )


def normalized(text: str) -> str:
    """Lower-case words separated by single spaces, with a space at each end (so phrases match whole words)."""
    return f" {_NON_WORD.sub(' ', text.lower()).strip()} "


def flagged_words(prompt: str, words: Iterable[str]) -> list[str]:
    """The list's words and phrases that the prompt contains, in the list's order. Linear in the prompt for each
    word; the list is capped at MAX_WORDS of MAX_WORD_CHARS."""
    text = normalized(prompt)
    return [word for word in words if (phrase := normalized(word)).strip() and phrase in text]


def checked_words(words: Sequence[str]) -> tuple[str, ...]:
    cleaned: list[str] = []
    for given in words:
        word = " ".join(given.split()).lower()
        if not word:
            continue
        if len(word) > MAX_WORD_CHARS or not normalized(word).strip():
            raise InvalidParamsError(
                f"A listed word has 1 to {MAX_WORD_CHARS} letters or digits; `{word[:60]}` does not."
            )
        if word not in cleaned:
            cleaned.append(word)
    if len(cleaned) > MAX_WORDS:
        raise InvalidParamsError(f"The list may hold {MAX_WORDS} words; this would make it {len(cleaned)}.")
    return tuple(cleaned)


def decide(prompt: str, policy: Policy, *, age_restricted: bool) -> tuple[Outside, list[str]]:
    """What happens to a prompt here: "allow", "spoiler" or "refuse", and the listed words it contains."""
    found = flagged_words(prompt, policy.words)
    if not found:
        return "allow", []
    if age_restricted and policy.in_age_restricted:
        return "allow", found
    return policy.outside, found


NSFW_RATINGS = ("questionable", "explicit")


def decide_rating(rating: str, policy: Policy, *, age_restricted: bool) -> Outside:
    """What happens to a described image of this rating here: with the server's `rating` option on, a questionable
    or explicit one is treated as a flagged prompt would be."""
    if not policy.rating or rating not in NSFW_RATINGS or (age_restricted and policy.in_age_restricted):
        return "allow"
    return policy.outside


def refusal(found: Sequence[str], *, in_dm: bool, age_restricted_allowed: bool) -> str:
    shown = ", ".join(f"`{word}`" for word in found[:5])
    if in_dm:
        where = "Ask for it in an age-restricted channel of a server that allows it, or change the prompt."
    elif age_restricted_allowed:
        where = "Ask for it in an age-restricted channel, or change the prompt."
    else:
        where = "This server does not draw such prompts; change the prompt."
    return f"This prompt has words kept out of {'DMs' if in_dm else 'this channel'} ({shown}). {where}"
