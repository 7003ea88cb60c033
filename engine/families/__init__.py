"""Model families: how each architecture turns a text into conditioning and calls its UNet.

This is the seam where a family plugs in (SD 1.x today): the plan, the sampling loop and the samplers are shared;
a family supplies `encode` (text -> `TextCond`) and `unet_fn` (the UNet call for one pass's size).
"""

from engine.families.base import ModelFamily, TextCond, UNetFn
from engine.families.sd1 import SD1Family

__all__ = ["ModelFamily", "SD1Family", "TextCond", "UNetFn"]
