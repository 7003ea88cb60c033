"""Model families: how each architecture turns a text into conditioning and calls its UNet.

This is the seam where a family plugs in (SD 1.x and SDXL): the plan, the sampling loop and the samplers are shared;
a family supplies `encode_schedule` (texts -> `TextCond`s) and `unet_fn` (the UNet call for one pass's size).
"""

from engine.families.base import ModelFamily, TextCond, UNetFn
from engine.families.sd1 import SD1Family
from engine.families.sdxl import SDXLFamily

__all__ = ["ModelFamily", "SD1Family", "SDXLFamily", "TextCond", "UNetFn"]
