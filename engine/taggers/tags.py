"""A WD14 tagger v3's input and output, as its reference code has them (neggles/wdv3-timm `wdv3_timm.py` and the
ONNX route of SmilingWolf's wd-tagger space): the image made RGB on white, padded to a white square, resized to the
model's side with bicubic, as float32 BGR values 0-255; the ratings, the general tags over their threshold and the
character tags over theirs, by confidence; tags written as A1111 prompt text. Pure (numpy and PIL)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

RATING, GENERAL, CHARACTER = 9, 0, 4  # `selected_tags.csv` categories
RATINGS = ("general", "sensitive", "questionable", "explicit")
GENERAL_THRESHOLD = 0.35
CHARACTER_THRESHOLD = 0.85  # SmilingWolf's space and its ports (neggles' script says 0.75)
# Tuned general thresholds (tsukky-v0w0v/batch_tagger `models.py`), by the model's folder name.
TUNED_THRESHOLDS = {"wd-vit-tagger-v3": 0.2614, "wd-eva02-large-tagger-v3": 0.5296}
# Kaomoji keep their underscores (toriato/stable-diffusion-webui-wd14-tagger `tagger/ui.py`).
KAOMOJI = frozenset({
    "0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9", ">_o", "@_@", "^_^",
    "o_o", "u_u", "x_x", "|_|", "||_||",
})  # fmt: skip
MAX_SUGGESTIONS = 4
MAX_SUGGESTION_TAGS = 40  # tags in one suggested prompt


def pad_square_white(image: Image.Image) -> Image.Image:
    """`pil_ensure_rgb` then `pil_pad_square`: transparency composited onto white, then a white square of the
    longer side with the image centred (left/top get the smaller half)."""
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode == "RGBA":
        canvas = Image.new("RGBA", image.size, (255, 255, 255))
        canvas.alpha_composite(image)
        image = canvas.convert("RGB")
    side = max(image.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return square


def prepare(image: Image.Image, side: int) -> np.ndarray:
    """The network's input: (1, side, side, 3) float32, BGR, 0-255."""
    square = pad_square_white(image)
    if square.size != (side, side):
        square = square.resize((side, side), Image.Resampling.BICUBIC)
    pixels = np.asarray(square, dtype=np.float32)[:, :, ::-1]
    return np.ascontiguousarray(pixels[None])


@dataclass(frozen=True)
class Labels:
    """`selected_tags.csv`: the tag of each output, and which outputs are ratings, general tags and characters."""

    names: tuple[str, ...]
    ratings: tuple[int, ...]
    general: tuple[int, ...]
    character: tuple[int, ...]


def read_labels(rows: Sequence[Mapping[str, str]]) -> Labels:
    """Labels from the CSV's rows (`name` and `category` columns); ValueError for what is not a tag list."""
    names: list[str] = []
    groups: dict[int, list[int]] = {RATING: [], GENERAL: [], CHARACTER: []}
    for index, row in enumerate(rows):
        name, category = row.get("name"), row.get("category")
        if name is None or category is None or not category.strip().lstrip("-").isdigit():
            raise ValueError(f"row {index + 2} has no `name` and numeric `category`")
        names.append(name)
        groups.get(int(category), []).append(index)
    if not names:
        raise ValueError("no tags")
    return Labels(tuple(names), tuple(groups[RATING]), tuple(groups[GENERAL]), tuple(groups[CHARACTER]))


def prompt_tag(name: str) -> str:
    """A tag as A1111 prompt text: underscores to spaces (kaomoji kept), parentheses escaped."""
    text = name if name in KAOMOJI else name.replace("_", " ")
    return text.replace("(", "\\(").replace(")", "\\)")


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


def describe(
    probabilities: np.ndarray, labels: Labels, *, general: float, character: float, tagger: str = ""
) -> Description:
    """`get_tags`: all four ratings; general tags with probability > `general`; character tags > `character`;
    each sorted by probability, highest first (ties in the CSV's order)."""
    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if probs.shape[0] != len(labels.names):
        raise ValueError(f"the tagger gave {probs.shape[0]} outputs for {len(labels.names)} tags")

    def over(indices: Sequence[int], threshold: float, ceiling: float = 2.0) -> tuple[tuple[str, float], ...]:
        chosen = [i for i in indices if threshold < probs[i] <= ceiling]
        chosen.sort(key=lambda i: -probs[i])
        return tuple((prompt_tag(labels.names[i]), float(probs[i])) for i in chosen)

    ratings = tuple((labels.names[i], float(probs[i])) for i in labels.ratings)
    return Description(
        ratings=ratings,
        general=over(labels.general, general),
        character=over(labels.character, character),
        tagger=tagger,
        maybe=over(labels.general, general / 2, general)[:20],
    )
