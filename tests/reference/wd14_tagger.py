"""SOURCE: neggles/wdv3-timm `wdv3_timm.py` @ 05b08427 (`pil_ensure_rgb`, `pil_pad_square`, `get_tags`) and the ONNX
route of SmilingWolf's wd-tagger space (resize to the model's side with bicubic, float32 0-255, RGB -> BGR, NHWC).

Test-only reference, written for Easel from that code's logic; upstream style is kept on purpose.
"""

# ruff: noqa
# mypy: ignore-errors

import numpy as np
from PIL import Image


def pil_ensure_rgb(image):
    if image.mode not in ["RGB", "RGBA"]:
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    if image.mode == "RGBA":
        canvas = Image.new("RGBA", image.size, (255, 255, 255))
        canvas.alpha_composite(image)
        image = canvas.convert("RGB")
    return image


def pil_pad_square(image):
    w, h = image.size
    px = max(image.size)
    canvas = Image.new("RGB", (px, px), (255, 255, 255))
    canvas.paste(image, ((px - w) // 2, (px - h) // 2))
    return canvas


def onnx_input(image, target_size):
    image = pil_ensure_rgb(image)
    image = pil_pad_square(image)
    if image.size != (target_size, target_size):
        image = image.resize((target_size, target_size), Image.BICUBIC)
    image_array = np.asarray(image, dtype=np.float32)
    image_array = image_array[:, :, ::-1]
    return np.expand_dims(image_array, axis=0)


def get_tags(probs, names, rating_idx, general_idx, character_idx, gen_threshold, char_threshold):
    labels = list(zip(names, probs))
    rating_labels = dict([labels[i] for i in rating_idx])
    gen_labels = [labels[i] for i in general_idx]
    gen_labels = dict([x for x in gen_labels if x[1] > gen_threshold])
    gen_labels = dict(sorted(gen_labels.items(), key=lambda item: item[1], reverse=True))
    char_labels = [labels[i] for i in character_idx]
    char_labels = dict([x for x in char_labels if x[1] > char_threshold])
    char_labels = dict(sorted(char_labels.items(), key=lambda item: item[1], reverse=True))
    combined_names = [x for x in gen_labels]
    combined_names.extend([x for x in char_labels])
    caption = ", ".join(combined_names)
    taglist = caption.replace("_", " ").replace("(", "\\(").replace(")", "\\)")
    return caption, taglist, rating_labels, char_labels, gen_labels
