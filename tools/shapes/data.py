"""Procedural coloured-shape pictures and their captions: the training data for `builtin:shapes`.

Everything is drawn at 4× and box-downsampled so edges are anti-aliased, and every draw is seeded.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
SUPERSAMPLE = 4

# Far-apart colours so the checker (and a 16×16 latent) can never confuse them.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

# Never shown in training: every colour is a foreground once and a background once, every shape appears.
HELD_OUT: tuple[tuple[str, str, str], ...] = (
    ("red", "circle", "blue"),
    ("green", "square", "yellow"),
    ("blue", "triangle", "white"),
    ("yellow", "cross", "black"),
    ("white", "circle", "red"),
    ("black", "triangle", "green"),
)

# Cross arm thickness as a fraction of the half-extent: fill ratio ≈ 0.6, like the recipe's.
CROSS_ARM = 0.72


@dataclass(frozen=True)
class Spec:
    """One picture: what is drawn, where, and how big (pixel units of the 64×64 image)."""

    fg: str
    shape: str
    bg: str
    cx: float
    cy: float
    half: float

    @property
    def caption(self) -> str:
        return caption(self.fg, self.shape, self.bg)


def caption(fg: str, shape: str, bg: str) -> str:
    return f"a {fg} {shape} on a {bg} background"


def all_combinations() -> list[tuple[str, str, str]]:
    """All 120 (fg, shape, bg) triples with fg ≠ bg, in a fixed order."""
    return [(fg, s, bg) for fg, s, bg in itertools.product(COLOURS, SHAPES, COLOURS) if fg != bg]


def seen_combinations() -> list[tuple[str, str, str]]:
    return [c for c in all_combinations() if c not in HELD_OUT]


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], fill: int | tuple[int, int, int]
) -> None:
    """Draw `shape` filling the box (x0, y0, x1, y1); shared by the dataset and the checker's templates."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "cross":
        ax, ay = w * CROSS_ARM / 4, h * CROSS_ARM / 4
        draw.rectangle((cx - ax, y0, cx + ax, y1), fill=fill)
        draw.rectangle((x0, cy - ay, x1, cy + ay), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def render(spec: Spec, fg_rgb: tuple[int, int, int] | None = None) -> Image.Image:
    """Render a spec as a 64×64 RGB image; `fg_rgb` overrides the drawn colour (for the LoRA's data)."""
    big = SIZE * SUPERSAMPLE
    img = Image.new("RGB", (big, big), PALETTE[spec.bg])
    s = SUPERSAMPLE
    box = (
        (spec.cx - spec.half) * s,
        (spec.cy - spec.half) * s,
        (spec.cx + spec.half) * s - 1,
        (spec.cy + spec.half) * s - 1,
    )
    draw_shape(ImageDraw.Draw(img), spec.shape, box, fg_rgb or PALETTE[spec.fg])
    return img.resize((SIZE, SIZE), Image.Resampling.BOX)


def random_spec(rng: random.Random, combos: list[tuple[str, str, str]]) -> Spec:
    """Big, unrotated shapes near the centre (half-extent 15-22 px, centre 32 ± 4 px)."""
    fg, shape, bg = combos[rng.randrange(len(combos))]
    cx, cy = 32 + rng.uniform(-4, 4), 32 + rng.uniform(-4, 4)
    return Spec(fg, shape, bg, cx=cx, cy=cy, half=rng.uniform(15, 22))


def make_specs(n: int, seed: int, combos: Iterable[tuple[str, str, str]] | None = None) -> list[Spec]:
    pool = list(combos) if combos is not None else seen_combinations()
    rng = random.Random(seed)
    return [random_spec(rng, pool) for _ in range(n)]


def render_array(specs: list[Spec], fg_rgb: tuple[int, int, int] | None = None) -> np.ndarray:
    """Render many specs into one uint8 array of shape (N, 64, 64, 3)."""
    out = np.empty((len(specs), SIZE, SIZE, 3), dtype=np.uint8)
    for i, spec in enumerate(specs):
        out[i] = np.asarray(render(spec, fg_rgb))
    return out
