"""The detailer between detection and inpainting, against a transcription of ADetailer's code
(tests/reference/adetailer_mask.py); its parameter text as ADetailer writes it, read back from a paste; its prompts
and seeds."""

from __future__ import annotations

import numpy as np
import pytest

from engine.detailer import (
    DetailerTab,
    detailer_fields,
    detector_stem,
    is_skip,
    region_prompt,
    tab_prompts,
    tabs_from_fields,
)
from engine.detectors.masks import Detections, box_masks, region_masks
from engine.infotext import parse_infotext, quote
from engine.params import GenerationParams
from engine.plan import detail_params, make_plan
from tests.reference import adetailer_mask as reference

SIZE = (160, 120)
BOXES = [(10.4, 12.2, 50.0, 60.9), (80.0, 20.0, 150.0, 110.0), (60.5, 70.0, 90.2, 100.0), (0.0, 0.0, 20.0, 16.0)]
CONFIDENCES = [0.91, 0.42, 0.77, 0.55]


def _found() -> Detections:
    return Detections(SIZE, tuple(BOXES), tuple(CONFIDENCES), box_masks(BOXES, SIZE))


def _reference(args: dict[str, object]) -> list[np.ndarray]:
    pred = reference.PredictOutput(list(BOXES), reference.create_mask_from_bbox(BOXES, SIZE), list(CONFIDENCES), SIZE)
    return [np.asarray(mask) for mask in reference.pred_preprocessing(pred, args)]


CASES = {
    "ADetailer's defaults": {},
    "erode": {"kernel": -9},
    "erode a box away": {"kernel": -41},
    "offset right and up, wrapping": {"x": 25, "y": 30},
    "offset left and down": {"x": -12, "y": -7, "kernel": 6},
    "merge": {"merge": "Merge"},
    "merge and invert": {"merge": "Merge and Invert", "kernel": 0},
    "ratio": {"min_ratio": 0.05, "max_ratio": 0.4},
    "top 2 by area": {"k": 2},
    "top 3 by confidence": {"k": 3, "by": "Confidence"},
    "everything": {"k": 3, "by": "Confidence", "min_ratio": 0.02, "x": 3, "y": 4, "kernel": 12, "merge": "Merge"},
}
_DEFAULT = {"kernel": 4, "x": 0, "y": 0, "merge": "None", "min_ratio": 0.0, "max_ratio": 1.0, "k": 0, "by": "Area"}


@pytest.mark.parametrize("case", CASES)
def test_masks_match_adetailers(case: str) -> None:
    args = {**_DEFAULT, **CASES[case]}
    tab = DetailerTab(
        model="face_yolov8n", dilate_erode=args["kernel"], x_offset=args["x"], y_offset=args["y"],
        mask_merge_invert=args["merge"], mask_min_ratio=args["min_ratio"], mask_max_ratio=args["max_ratio"],
        mask_k=args["k"], mask_filter_method=args["by"],
    )  # fmt: skip
    ours = region_masks(_found(), tab)
    theirs = _reference(args)
    assert len(ours) == len(theirs)
    for mine, expected in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(mine, expected)


def test_a_box_mask_fills_the_box_corners_included() -> None:
    [mask] = box_masks([(2.0, 3.0, 5.0, 6.0)], (8, 8))
    assert mask[3:7, 2:6].min() == 255 and mask.sum() == 16 * 255


def test_prompts_split_on_sep_with_the_images_prompt_for_blanks() -> None:
    prompts = tab_prompts("detailed face [SEP] [SEP] [PROMPT], smiling [SEP][SKIP]", "a portrait")
    assert prompts == ["detailed face", "a portrait", "a portrait, smiling", "[SKIP]"]
    assert [region_prompt(prompts, j) for j in (0, 1, 2, 3, 7)][-1] == "[SKIP]"
    assert is_skip(region_prompt(prompts, 5)) and not is_skip("[SKIP] face")
    assert tab_prompts("", "a portrait") == ["a portrait"]


def test_parameter_text_as_adetailer_writes_it() -> None:
    tabs = (
        DetailerTab(model="face_yolov8n"),
        DetailerTab(
            model="hand_yolov8n.pt",
            prompt="detailed hands, 5 fingers",
            mask_k=2,
            use_steps=True,
            steps=12,
            use_sampler=True,
            sampler="Euler a",
            x_offset=3,
        ),
    )
    assert detailer_fields(tabs) == {
        "ADetailer model": "face_yolov8n.pt",
        "ADetailer confidence": "0.3",
        "ADetailer dilate erode": "4",
        "ADetailer mask blur": "4",
        "ADetailer denoising strength": "0.4",
        "ADetailer inpaint only masked": "True",
        "ADetailer inpaint padding": "32",
        "ADetailer model 2nd": "hand_yolov8n.pt",
        "ADetailer prompt 2nd": "detailed hands, 5 fingers",
        "ADetailer confidence 2nd": "0.3",
        "ADetailer method to decide top k masks 2nd": "Area",
        "ADetailer mask only top k 2nd": "2",
        "ADetailer x offset 2nd": "3",
        "ADetailer dilate erode 2nd": "4",
        "ADetailer mask blur 2nd": "4",
        "ADetailer denoising strength 2nd": "0.4",
        "ADetailer inpaint only masked 2nd": "True",
        "ADetailer inpaint padding 2nd": "32",
        "ADetailer use separate steps 2nd": "True",
        "ADetailer steps 2nd": "12",
        "ADetailer use separate sampler 2nd": "True",
        "ADetailer sampler 2nd": "Euler a",
        "ADetailer version": "25.3.0",
    }


def test_a_job_writes_the_detailer_into_its_parameter_text_and_a_paste_reads_it_back() -> None:
    tabs = (
        DetailerTab(model="face_yolov8n", prompt="a smiling face, [PROMPT]", confidence=0.5, denoising_strength=0.35),
        DetailerTab(model="hand_yolov8n", inpaint_only_masked=False, use_cfg_scale=True, cfg_scale=5.5),
    )
    plan = make_plan(GenerationParams(prompt="a portrait", model="m", seed=7, detailers=tabs))
    line = ", ".join(f"{k}: {quote(v)}" for k, v in plan.infotext_fields if v is not None)
    notes: list[str] = []
    read = tabs_from_fields(parse_infotext(f"a portrait\nSteps: 20, Seed: 7, {line}"), notes)
    assert [tab.model for tab in read] == ["face_yolov8n.pt", "hand_yolov8n.pt"]  # ADetailer's names; the resolver
    assert tuple(tab.replace(model=detector_stem(tab.model)) for tab in read) == tabs and notes == []  # finds files


def test_a_civitai_block_with_adetailer_keys_reads_as_tabs() -> None:
    text = (
        "1girl, portrait\nNegative prompt: lowres\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 123, "
        "Size: 512x768, Model hash: 7f96a1a9ca, Model: majicmixRealistic_v7, Denoising strength: 0.4, ADetailer "
        "model: face_yolov8n.pt, ADetailer confidence: 0.3, ADetailer dilate erode: 4, ADetailer mask blur: 4, "
        "ADetailer denoising strength: 0.4, ADetailer inpaint only masked: True, ADetailer inpaint padding: 32, "
        "ADetailer model 2nd: mediapipe_face_mesh, ADetailer confidence 2nd: 0.3, ADetailer ControlNet model: "
        "control_v11p_sd15_inpaint, ADetailer version: 23.11.1, Hires upscale: 2, Hires upscaler: Latent, "
        "Version: v1.6.0"
    )
    notes: list[str] = []
    tabs = tabs_from_fields(parse_infotext(text), notes)
    assert tabs == (DetailerTab(model="face_yolov8n.pt"),)
    assert any("mediapipe" in note for note in notes)
    assert any("ADetailer ControlNet model: control_v11p_sd15_inpaint" in note for note in notes)


def test_each_region_is_an_only_masked_inpaint_with_the_images_seed_plus_its_index() -> None:
    job = GenerationParams(prompt="p", model="m", seed=100, subseed=9, subseed_strength=0.2, batch_size=3,
                           width=512, height=768, steps=30, enable_hr=True, cfg_scale=6.0)  # fmt: skip
    tab = DetailerTab(model="face", mask_blur=6, inpaint_padding=40, use_clip_skip=True, clip_skip=2)
    region = detail_params(job, tab, prompt="face", negative="bad", image=2, region=1)
    # A variation batch keeps one seed for every image (A1111); the subseeds count up.
    assert (region.seed, region.subseed, region.subseed_strength) == (101, 9 + 2 + 1, 0.2)
    assert (region.width, region.height, region.steps, region.cfg_scale, region.clip_skip) == (512, 768, 30, 6.0, 2)
    assert region.inpaint_full_res and region.inpaint_full_res_padding == 40 and region.mask_blur == 6
    assert region.inpainting_fill == "original" and region.denoising_strength == 0.4 and not region.enable_hr
    own_tab = tab.replace(use_inpaint_width_height=True, inpaint_width=640, inpaint_height=640, use_sampler=True,
                          sampler="Euler a", scheduler="Exponential")  # fmt: skip
    own = detail_params(job, own_tab, prompt="f", negative="", image=0, region=0)
    assert (own.width, own.height, own.sampler, own.schedule) == (640, 640, "Euler a", "Exponential")
