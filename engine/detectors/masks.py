"""What happens between detection and inpainting, as ADetailer does it (`adetailer/mask.py`, `common.py`): masks from
boxes, the ratio and top-k filters, and the mask geometry (offset, dilate/erode, merge, invert)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

import cv2
import numpy as np

from engine.detailer import DetailerTab

# -- detections to masks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detections:
    """What a detector found on an image of `size` (width, height): boxes (x1, y1, x2, y2), confidences, and one
    0/255 mask per box (a filled box, or a segmentation model's mask)."""

    size: tuple[int, int]
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    confidences: tuple[float, ...] = ()
    masks: tuple[np.ndarray, ...] = ()

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self, order: Sequence[int]) -> Detections:
        return Detections(
            self.size,
            tuple(self.boxes[i] for i in order),
            tuple(self.confidences[i] for i in order),
            tuple(self.masks[i] for i in order),
        )


def box_masks(boxes: Sequence[Sequence[float]], size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """ADetailer's `create_mask_from_bbox`: each box filled with 255 (PIL's rectangle, both corners included)."""
    from PIL import Image, ImageDraw

    masks = []
    for box in boxes:
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).rectangle(list(box), fill=255)
        masks.append(np.asarray(mask))
    return tuple(masks)


def _area(box: Sequence[float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def filter_by_ratio(found: Detections, low: float, high: float) -> Detections:
    """Keep the boxes whose area is between `low` and `high` of the image's (ADetailer's `filter_by_ratio`)."""
    width, height = found.size
    return found.take([i for i, box in enumerate(found.boxes) if low <= _area(box) / (width * height) <= high])


def filter_k_by(found: Detections, k: int, by: str) -> Detections:
    """The `k` largest boxes (`Area`) or most confident (`Confidence`), largest first; all of them when k is 0.
    numpy's argsort (quicksort) with its order among equals, as ADetailer."""
    if k == 0 or not found.boxes:
        return found
    keys = [_area(box) for box in found.boxes] if by == "Area" else list(found.confidences)
    order = np.argsort(keys)[-k:][::-1]
    return found.take([int(i) for i in order])


def mask_preprocess(
    masks: Sequence[np.ndarray], kernel: int, x_offset: int, y_offset: int, merge_invert: str
) -> list[np.ndarray]:
    """ADetailer's `mask_preprocess`: offset (x to the right, y up, wrapping round as `ImageChops.offset`), dilate
    (kernel > 0) or erode (< 0) with a square kernel, drop masks left empty, then merge or merge-and-invert."""
    out = list(masks)
    if not out:
        return []
    if x_offset or y_offset:
        out = [np.roll(mask, (-y_offset, x_offset), axis=(0, 1)) for mask in out]
    if kernel:
        element = cv2.getStructuringElement(cv2.MORPH_RECT, (abs(kernel), abs(kernel)))
        op = cv2.dilate if kernel > 0 else cv2.erode
        out = [op(np.ascontiguousarray(mask), element, iterations=1) for mask in out]
        out = [mask for mask in out if cv2.countNonZero(mask) > 0]
    if merge_invert == "None" or not out:
        return out
    merged = reduce(cv2.bitwise_or, out)
    return [merged] if merge_invert == "Merge" else [255 - merged]


def touching(user_mask: np.ndarray, masks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """ADetailer's `inpaint_mask_filter`, for an inpaint job's "whole picture" mode: only the regions that share a
    pixel with the job's own mask (both read as 8-bit masks of the image's size)."""
    return [mask for mask in masks if cv2.countNonZero(cv2.bitwise_and(user_mask, np.ascontiguousarray(mask))) > 0]


def region_masks(found: Detections, tab: DetailerTab) -> list[np.ndarray]:
    """The masks one tab inpaints, in order: ADetailer's `pred_preprocessing` (ratio, top k, no sorting by
    default, then the mask geometry)."""
    kept = filter_by_ratio(found, tab.mask_min_ratio, tab.mask_max_ratio)
    kept = filter_k_by(kept, tab.mask_k, tab.mask_filter_method)
    return mask_preprocess(kept.masks, tab.dilate_erode, tab.x_offset, tab.y_offset, tab.mask_merge_invert)
