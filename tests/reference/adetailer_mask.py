"""A transcription of ADetailer's mask handling (Bing-su/adetailer v25.3.0 `adetailer/mask.py` and
`adetailer/common.py`), on PIL images as ADetailer has them, for comparing Easel's numpy version against."""

from __future__ import annotations

from functools import reduce

import cv2
import numpy as np
from PIL import Image, ImageChops, ImageDraw


def create_mask_from_bbox(bboxes, shape):  # type: ignore[no-untyped-def]
    masks = []
    for bbox in bboxes:
        mask = Image.new("L", shape, 0)
        mask_draw = ImageDraw.Draw(mask)
        mask_draw.rectangle(bbox, fill=255)
        masks.append(mask)
    return masks


def _dilate(arr, value):  # type: ignore[no-untyped-def]
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (value, value))
    return cv2.dilate(arr, kernel, iterations=1)


def _erode(arr, value):  # type: ignore[no-untyped-def]
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (value, value))
    return cv2.erode(arr, kernel, iterations=1)


def dilate_erode(img, value):  # type: ignore[no-untyped-def]
    if value == 0:
        return img
    arr = np.array(img)
    arr = _dilate(arr, value) if value > 0 else _erode(arr, -value)
    return Image.fromarray(arr)


def offset(img, x=0, y=0):  # type: ignore[no-untyped-def]
    return ImageChops.offset(img, x, -y)


def is_all_black(img):  # type: ignore[no-untyped-def]
    if isinstance(img, Image.Image):
        img = np.array(img.convert("L"))
    return cv2.countNonZero(img) == 0


def bbox_area(bbox):  # type: ignore[no-untyped-def]
    return (bbox[2] - bbox[0]) * (bbox[3] - bbox[1])


def mask_merge(masks):  # type: ignore[no-untyped-def]
    arrs = [np.array(m) for m in masks]
    arr = reduce(cv2.bitwise_or, arrs)
    return [Image.fromarray(arr)]


def mask_invert(masks):  # type: ignore[no-untyped-def]
    return [ImageChops.invert(m) for m in masks]


def mask_merge_invert(masks, mode):  # type: ignore[no-untyped-def]
    mode = ["None", "Merge", "Merge and Invert"].index(mode)
    if mode == 0 or not masks:
        return masks
    if mode == 1:
        return mask_merge(masks)
    return mask_invert(mask_merge(masks))


def mask_preprocess(masks, kernel=0, x_offset=0, y_offset=0, merge_invert="None"):  # type: ignore[no-untyped-def]
    if not masks:
        return []
    if x_offset != 0 or y_offset != 0:
        masks = [offset(m, x_offset, y_offset) for m in masks]
    if kernel != 0:
        masks = [dilate_erode(m, kernel) for m in masks]
        masks = [m for m in masks if not is_all_black(m)]
    return mask_merge_invert(masks, mode=merge_invert)


class PredictOutput:
    def __init__(self, bboxes, masks, confidences, size):  # type: ignore[no-untyped-def]
        self.bboxes, self.masks, self.confidences, self.size = bboxes, masks, confidences, size


def filter_by_ratio(pred, low, high):  # type: ignore[no-untyped-def]
    if not pred.bboxes:
        return pred
    w, h = pred.size
    orig_area = w * h
    idx = [i for i in range(len(pred.bboxes)) if low <= bbox_area(pred.bboxes[i]) / orig_area <= high]
    pred.bboxes = [pred.bboxes[i] for i in idx]
    pred.masks = [pred.masks[i] for i in idx]
    pred.confidences = [pred.confidences[i] for i in idx]
    return pred


def filter_k_largest(pred, k=0):  # type: ignore[no-untyped-def]
    if not pred.bboxes or k == 0:
        return pred
    areas = [bbox_area(bbox) for bbox in pred.bboxes]
    idx = np.argsort(areas)[-k:]
    idx = idx[::-1]
    pred.bboxes = [pred.bboxes[i] for i in idx]
    pred.masks = [pred.masks[i] for i in idx]
    pred.confidences = [pred.confidences[i] for i in idx]
    return pred


def filter_k_most_confident(pred, k=0):  # type: ignore[no-untyped-def]
    if not pred.bboxes or not pred.confidences or k == 0:
        return pred
    idx = np.argsort(pred.confidences)[-k:]
    idx = idx[::-1]
    pred.bboxes = [pred.bboxes[i] for i in idx]
    pred.masks = [pred.masks[i] for i in idx]
    pred.confidences = [pred.confidences[i] for i in idx]
    return pred


def pred_preprocessing(pred, args):  # type: ignore[no-untyped-def]
    """`scripts/!adetailer.py` `pred_preprocessing` (sorting off, txt2img)."""
    pred = filter_by_ratio(pred, low=args["min_ratio"], high=args["max_ratio"])
    if args["by"] == "Area":  # noqa: SIM108  (as ADetailer's filter_k_by reads)
        pred = filter_k_largest(pred, args["k"])
    else:
        pred = filter_k_most_confident(pred, args["k"])
    return mask_preprocess(pred.masks, kernel=args["kernel"], x_offset=args["x"], y_offset=args["y"],
                           merge_invert=args["merge"])  # fmt: skip
