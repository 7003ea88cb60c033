"""The detailer pass on the tiny model: after the sampling passes, inside the same job (progress, cancel, notes),
only the detected regions redrawn; Fix faces on a finished image; a paste with ADetailer keys resolved."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.detailer import DetailerTab
from engine.detectors.files import DetectorLibrary
from engine.detectors.masks import Detections, box_masks
from engine.detectors.predict import DetectorModels
from engine.errors import Cancelled
from engine.images import encode_png
from engine.pipeline import DiffusersEngine
from engine.request import Catalog, Request, resolve
from tests.detectors_fakes import tiny_yolo, write_safetensors
from tests.engine.conftest import tiny_params
from tests.engine.test_request import LIMITS
from tests.fakes import FakeNetworks, FakeRegistry

BOX = (8.0, 10.0, 27.0, 30.0)


class StubDetectors:
    """Detects the boxes it is given, on any image (the network's part is tested in test_detectors.py)."""

    def __init__(self, boxes: list[tuple[float, float, float, float]]) -> None:
        self.boxes = boxes
        self.calls: list[tuple[str, float]] = []

    def detect(self, name: str, image: Image.Image, confidence: float) -> Detections:
        self.calls.append((name, confidence))
        masks = box_masks(self.boxes, image.size)
        return Detections(image.size, tuple(self.boxes), tuple(0.9 for _ in self.boxes), masks)


@pytest.fixture
def stubbed(engine: DiffusersEngine) -> Iterator[StubDetectors]:
    real = engine.detectors
    stub = StubDetectors([BOX])
    engine.detectors = stub  # type: ignore[assignment]
    yield stub
    engine.detectors = real


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_the_detailer_redraws_the_detected_region_and_nothing_else(
    engine: DiffusersEngine, stubbed: StubDetectors
) -> None:
    [plain] = engine.generate(tiny_params())
    tab = DetailerTab(model="face_yolov8n", denoising_strength=0.6, confidence=0.45, inpaint_padding=4)
    [detailed] = engine.generate(tiny_params(detailers=(tab,)))
    difference = np.abs(_pixels(detailed.image) - _pixels(plain.image)).max(axis=2)
    x1, y1, x2, y2 = (int(v) for v in BOX)
    assert difference[y1 + 4 : y2 - 4, x1 + 4 : x2 - 4].mean() > 2  # redrawn inside
    outside = np.ones_like(difference, dtype=bool)
    outside[max(0, y1 - 14) : y2 + 14, max(0, x1 - 14) : x2 + 14] = False  # beyond the dilation and the mask blur
    assert difference[outside].max() == 0
    assert stubbed.calls == [("face_yolov8n", 0.45)]
    assert "ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.45" in detailed.infotext
    assert "ADetailer denoising strength: 0.6" in detailed.infotext and detailed.notes == ()


def test_the_detailer_is_part_of_the_jobs_progress(engine: DiffusersEngine, stubbed: StubDetectors) -> None:
    steps: list[tuple[int, int]] = []
    engine.generate(tiny_params(detailers=(DetailerTab(model="face"),)), on_step=lambda i, n: steps.append((i, n)))
    assert steps[-1][0] == steps[-1][1]  # ends full
    assert len(steps) > 4 and all(b[0] / b[1] >= a[0] / a[1] for a, b in itertools.pairwise(steps))
    assert steps[3][0] / steps[3][1] == pytest.approx(0.5)  # the 4 sampling steps are the first half


def test_cancelling_during_the_detailer_cancels_the_job(engine: DiffusersEngine, stubbed: StubDetectors) -> None:
    calls: list[int] = []

    def cancelled() -> bool:
        calls.append(1)
        return bool(stubbed.calls)  # once detection has run

    with pytest.raises(Cancelled):
        engine.generate(tiny_params(detailers=(DetailerTab(model="face"),)), is_cancelled=cancelled)


def test_more_regions_than_the_limit_are_left_with_a_note(engine: DiffusersEngine, stubbed: StubDetectors) -> None:
    stubbed.boxes = [(float(x), float(y), x + 6.0, y + 6.0) for x in (2, 20, 40) for y in (2, 20, 40)] + [
        (50, 2, 60, 9)
    ]
    [image] = engine.generate(tiny_params(steps=2, detailers=(DetailerTab(model="face", dilate_erode=0),)))
    assert image.notes == ("The 1st detailer (face) found 10 regions; the first 8 were detailed.",)


def test_a_real_detector_that_finds_nothing_leaves_the_image_with_a_note(
    engine: DiffusersEngine, tmp_path: Path
) -> None:
    network = tiny_yolo(seed=3)
    with torch.no_grad():
        for branch in network.model[22].cv3:
            branch[2].bias.fill_(-30.0)  # every class score ~0
    write_safetensors(network, tmp_path / "face_yolov8n.safetensors")
    real = engine.detectors
    engine.detectors = DetectorModels(DetectorLibrary([tmp_path]), "cpu")
    try:
        [plain] = engine.generate(tiny_params())
        [image] = engine.generate(tiny_params(detailers=(DetailerTab(model="face_yolov8n"),)))
    finally:
        engine.detectors = real
    np.testing.assert_array_equal(_pixels(image.image), _pixels(plain.image))
    assert image.notes == ("The 1st detailer (face_yolov8n) found nothing; that part of the image was left as it was.",)


def test_fix_faces_details_a_finished_image_alone(engine: DiffusersEngine, stubbed: StubDetectors) -> None:
    job = tiny_params()
    [plain] = engine.generate(job)
    digest = engine.blobs.put(encode_png(plain.image, plain.infotext))
    tab = DetailerTab(model="face_yolov8n")
    [fixed] = engine.generate(job.replace(detailers=(tab,), detail_images=(digest,)))
    [whole] = engine.generate(job.replace(detailers=(tab,)))
    np.testing.assert_array_equal(_pixels(fixed.image), _pixels(whole.image))  # the same as detailing in the job
    assert fixed.infotext.startswith(plain.infotext.rsplit(", Version: ", 1)[0] + ", ADetailer model: face_yolov8n.pt")
    assert fixed.infotext.endswith(", ADetailer version: 25.3.0, Version: Easel 0.1.0")


def test_a_pasted_adetailer_block_runs_the_installed_detector_and_notes_a_missing_one() -> None:
    block = (
        "a portrait\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 512x512, ADetailer model: "
        "face_yolov8n.pt, ADetailer confidence: 0.35, ADetailer dilate erode: 4, ADetailer mask blur: 4, ADetailer "
        "denoising strength: 0.4, ADetailer inpaint only masked: True, ADetailer inpaint padding: 32, ADetailer model "
        "2nd: eyes_yolov8n.pt, ADetailer prompt 2nd: detailed eyes, ADetailer version: 24.9.0"
    )
    resolved = resolve(Request(paste=block), Catalog(FakeRegistry(), FakeNetworks()), LIMITS)
    assert resolved.params.detailers == (DetailerTab(model="face_yolov8n", confidence=0.35),)
    assert resolved.notes == (
        "ADetailer model: eyes_yolov8n.pt is not installed here (the owner can add `eyes_yolov8n.safetensors` "
        "(converted from ADetailer's `eyes_yolov8n.pt` with `python main.py convert-detector eyes_yolov8n.pt`) or "
        "`eyes_yolov8n.onnx` to the detector folder); that detailer was not run.",
    )


def test_a_detailer_asked_for_by_name_must_be_installed() -> None:
    from engine.errors import InvalidParamsError

    catalog = Catalog(FakeRegistry(), FakeNetworks())
    params = resolve(Request(prompt="a cat", options={"detailers": "hand_yolov8n"}), catalog, LIMITS).params
    assert params.detailers == (DetailerTab(model="hand_yolov8n"),)
    with pytest.raises(InvalidParamsError, match="Unknown detector"):
        resolve(Request(prompt="a cat", options={"detailers": "feet"}), catalog, LIMITS)


def test_the_detailed_image_keeps_its_parameter_text_in_the_png(
    engine: DiffusersEngine, stubbed: StubDetectors
) -> None:
    from engine.images import read_infotext

    [image] = engine.generate(tiny_params(detailers=(DetailerTab(model="face"),)))
    assert read_infotext(encode_png(image.image, image.infotext)) == image.infotext
    assert Image.open(io.BytesIO(encode_png(image.image, image.infotext))).size == (64, 64)


def test_a_pasted_block_runs_the_detailer_and_its_parameter_text_pastes_back_to_the_same_job(
    engine: DiffusersEngine, stubbed: StubDetectors
) -> None:
    block = (
        "a portrait\nNegative prompt: blurry\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x64, "
        'ADetailer model: face_yolov8n.pt, ADetailer prompt: "a smiling face, [PROMPT]", ADetailer confidence: '
        "0.35, ADetailer dilate erode: 8, ADetailer mask blur: 4, ADetailer denoising strength: 0.5, ADetailer inpaint "
        "only masked: True, ADetailer inpaint padding: 16, ADetailer use separate steps: True, ADetailer steps: 3, "
        "ADetailer model 2nd: hand_yolov8n.pt, ADetailer confidence 2nd: 0.3, ADetailer version: 24.9.0"
    )
    catalog = Catalog(FakeRegistry(), FakeNetworks())
    first = resolve(Request(paste=block), catalog, LIMITS)
    assert first.notes == () and len(first.params.detailers) == 2
    [image] = engine.generate(first.params.replace(model="builtin:tiny"))
    assert len(stubbed.calls) == 2  # both detectors ran, in order
    again = resolve(Request(paste=image.infotext), catalog, LIMITS)
    assert again.params.detailers == first.params.detailers
    assert not any("ADetailer" in note for note in again.notes)
    [twice] = engine.generate(again.params.replace(model="builtin:tiny"))
    np.testing.assert_array_equal(_pixels(twice.image), _pixels(image.image))


def test_on_an_inpaint_job_only_the_regions_touching_its_mask_are_detailed(
    engine: DiffusersEngine, stubbed: StubDetectors
) -> None:
    from PIL import ImageDraw

    rng = np.random.default_rng(4)
    picture = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64))
    ImageDraw.Draw(mask).rectangle((0, 0, 24, 24), fill=255)  # the user's mask: the top-left corner
    init, user_mask = engine.blobs.put(encode_png(picture, "")), engine.blobs.put(encode_png(mask, ""))
    stubbed.boxes = [(4.0, 4.0, 16.0, 16.0), (44.0, 44.0, 60.0, 60.0)]  # one in the mask, one far from it
    job = tiny_params(init_image=init, mask=user_mask, denoising_strength=0.75)
    [inpainted] = engine.generate(job)
    tab = DetailerTab(model="face", dilate_erode=0, mask_blur=0, denoising_strength=0.9)
    [detailed] = engine.generate(job.replace(detailers=(tab,)))
    difference = np.abs(_pixels(detailed.image) - _pixels(inpainted.image)).max(axis=2)
    assert difference[6:14, 6:14].mean() > 2 and difference[40:64, 40:64].max() == 0
