"""A WD14 tagger v3's input and output, as its reference code has them (neggles/wdv3-timm `wdv3_timm.py` and the
ONNX route of SmilingWolf's wd-tagger space): the image made RGB on white, padded to a white square, resized to the
model's side with bicubic, as float32 BGR values 0-255; the ratings, the general tags over their threshold and the
character tags over theirs, by confidence; tags written as A1111 prompt text. Pure (numpy and PIL)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.taggers.description import Description

RATING, GENERAL, CHARACTER = 9, 0, 4  # `selected_tags.csv` categories
GENERAL_THRESHOLD = 0.35
CHARACTER_THRESHOLD = 0.85  # SmilingWolf's space and its ports (neggles' script says 0.75)
# Tuned general thresholds (tsukky-v0w0v/batch_tagger `models.py`), by the model's folder name.
TUNED_THRESHOLDS = {"wd-vit-tagger-v3": 0.2614, "wd-eva02-large-tagger-v3": 0.5296}
# Kaomoji keep their underscores (toriato/stable-diffusion-webui-wd14-tagger `tagger/ui.py`).
KAOMOJI = frozenset({
    "0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9", ">_o", "@_@", "^_^",
    "o_o", "u_u", "x_x", "|_|", "||_||",
})  # fmt: skip


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
