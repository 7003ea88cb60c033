"""Detectors: tiny random YOLOv8 networks as `.safetensors` and ONNX exports, run as ultralytics predicts; the
post-processing on predictions the test controls; the folder listing; the converter, and pickles never run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.detectors.convert import ConvertError, convert
from engine.detectors.files import DetectorLibrary
from engine.detectors.predict import DetectorModels, Raw, detect, letterbox
from engine.errors import InvalidParamsError
from tests.detectors_fakes import export_onnx, tiny_yolo, write_malicious_pt, write_safetensors, write_ultralytics_pt


def _raw(rows: list[list[float]], classes: int) -> Raw:
    """Predictions as the network gives them: one column per anchor, (cx, cy, w, h, class scores...)."""
    predictions = np.zeros((4 + classes, 50), np.float32)
    for i, row in enumerate(rows):
        predictions[:, i] = row
    return Raw(predictions)


def test_post_processing_keeps_the_confident_boxes_per_class_and_maps_them_back_to_the_image() -> None:
    # 300x200 is letterboxed to 640x448: scaled by 640/300, then 10 + 11 rows of padding (427 -> 448); ultralytics'
    # scale_boxes takes the pad from the unrounded size: round((448 - 426.67) / 2 - 0.1) = 11.
    gain, top = 640 / 300, 11
    rows = [
        [320, 224, 100, 80, 0.90, 0.0],  # kept
        [322, 226, 100, 80, 0.80, 0.0],  # overlaps the first by IoU > 0.7, same class: suppressed
        [322, 226, 100, 80, 0.0, 0.60],  # the same place, another class: kept
        [100, 100, 40, 40, 0.25, 0.0],  # under the confidence: dropped
        [100, 300, 60, 30, 0.0, 0.50],  # kept
    ]
    found = detect(lambda tensor: _raw(rows, 2), Image.new("RGB", (300, 200)), 0.3)
    assert found.confidences == pytest.approx((0.9, 0.6, 0.5))
    x1, y1, x2, y2 = found.boxes[0]
    assert (x1, y1, x2, y2) == pytest.approx(((270) / gain, (184 - top) / gain, 370 / gain, (264 - top) / gain))
    assert found.boxes[2] == pytest.approx((70 / gain, (285 - top) / gain, 130 / gain, (315 - top) / gain))
    mask = found.masks[0]
    assert mask.shape == (200, 300) and mask[100, 150] == 255 and mask[5, 5] == 0


def test_nothing_over_the_confidence_is_no_detection() -> None:
    found = detect(lambda tensor: _raw([[50, 50, 10, 10, 0.2]], 1), Image.new("RGB", (64, 64)), 0.3)
    assert len(found) == 0 and found.size == (64, 64)


def test_letterbox_pads_to_the_stride_with_grey() -> None:
    boxed = letterbox(np.zeros((200, 300, 3), np.uint8), (640, 640), auto=True)
    assert boxed.shape == (448, 640, 3) and boxed[0, 0, 0] == 114 and boxed[10, 0, 0] == 0 and boxed[437, 0, 0] == 114
    assert letterbox(np.zeros((200, 300, 3), np.uint8), (640, 640), auto=False).shape == (640, 640, 3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adetailer")
    write_safetensors(tiny_yolo(seed=1), root / "face_yolov8n.safetensors")
    export_onnx(tiny_yolo(seed=1), root / "face_onnx.onnx")
    write_safetensors(tiny_yolo(masks=32, seed=2), root / "person_yolov8n-seg.safetensors")
    export_onnx(tiny_yolo(masks=32, seed=2), root / "person_onnx-seg.onnx")
    export_onnx(tiny_yolo(seed=4), root / "fixed_size.onnx", dynamic=False)
    write_ultralytics_pt(tiny_yolo(seed=3), root / "hand_yolov8n.pt")
    (root / "notes.onnx").write_bytes(b"not a model at all")
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3, 3)}, str(root / "lora_by_mistake.safetensors"))
    return root


def test_the_folder_lists_detectors_and_refuses_pickles_and_strangers(folder: Path) -> None:
    library = DetectorLibrary([folder])
    listed = {entry.name: entry for entry in library.entries()}
    assert listed["face_yolov8n"].label == "YOLOv8 detection, 1 class"
    assert listed["person_yolov8n-seg"].segmentation and listed["person_onnx-seg"].label == "ONNX segmentation"
    assert "convert-detector hand_yolov8n.pt" in str(listed["hand_yolov8n"].refused)
    assert "not an ONNX model" in str(listed["notes"].refused)
    assert "not a YOLOv8 detector" in str(listed["lora_by_mistake"].refused)
    assert library.resolve("face_yolov8n.pt").path.suffix == ".safetensors"  # ADetailer's name finds the file
    with pytest.raises(InvalidParamsError, match="ultralytics pickle"):
        library.resolve("hand_yolov8n.pt")
    with pytest.raises(InvalidParamsError, match="Closest: face_yolov8n"):
        library.resolve("face_yolov8s.pt")


PAIRS = [("face_yolov8n", "face_onnx"), ("person_yolov8n-seg", "person_onnx-seg")]


@pytest.mark.parametrize(("torch_name", "onnx_name"), PAIRS)
def test_the_onnx_export_detects_what_the_safetensors_weights_detect(
    folder: Path, torch_name: str, onnx_name: str
) -> None:
    models = DetectorModels(DetectorLibrary([folder]), "cpu")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    # A random network scores everything near 0.5: a confidence between its scores keeps a handful.
    scores = models.network(torch_name)(np.asarray(letterbox(np.asarray(image), (640, 640), auto=True), np.float32)
                                        .transpose(2, 0, 1)[None] / 255)  # fmt: skip
    top = np.sort(scores.predictions[4])[-30:]
    gap = int(np.argmax(np.diff(top)[10:])) + 10  # the widest gap among the top scores, away from the ties
    confidence = float(top[gap] + top[gap + 1]) / 2
    mine, theirs = models.detect(torch_name, image, confidence), models.detect(onnx_name, image, confidence)
    assert len(mine) >= 1 and len(mine) == len(theirs)
    np.testing.assert_allclose(np.array(mine.boxes), np.array(theirs.boxes), atol=0.05)
    for a, b in zip(mine.masks, theirs.masks, strict=True):
        assert a.shape == (480, 640) and (a != b).mean() < 0.01


def test_a_fixed_size_export_gets_the_whole_square(folder: Path) -> None:
    models = DetectorModels(DetectorLibrary([folder]), "cpu")
    network = models.network("fixed_size")
    seen: list[tuple[int, ...]] = []

    def spy(tensor: np.ndarray) -> Raw:
        seen.append(tensor.shape)
        return network(tensor)

    detect(spy, Image.new("RGB", (300, 200)), 0.99, square=network.square)
    assert seen == [(1, 3, 640, 640)]


def test_the_converter_writes_the_same_network_as_safetensors(folder: Path, tmp_path: Path) -> None:
    network = tiny_yolo(masks=32, seed=5)
    source = write_ultralytics_pt(tiny_yolo(masks=32, seed=5), tmp_path / "eyes.pt")
    out = convert(source)
    assert out == tmp_path / "eyes.safetensors"
    library = DetectorLibrary([tmp_path])
    assert library.resolve("eyes.pt").label == "YOLOv8 segmentation, 1 class"
    x = torch.rand(1, 3, 128, 96)
    with torch.inference_mode():
        expected = network.half().float()(x)[0]
        got = DetectorModels(library, "cpu").network("eyes").model(x)[0]
    torch.testing.assert_close(got, expected)


def test_a_malicious_pickle_never_runs_in_the_converter_or_the_listing(tmp_path: Path) -> None:
    target = tmp_path / "pwned.txt"
    evil = write_malicious_pt(tmp_path / "face_yolov8n.pt", target)
    with pytest.raises(ConvertError, match=r"io\.open"):
        convert(evil)
    listed = DetectorLibrary([tmp_path]).entries()
    assert listed[0].refused is not None and not target.exists()
    assert not (tmp_path / "face_yolov8n.safetensors").exists()


class _NmsExport(torch.nn.Module):
    """An export with NMS built in: (1, 300, 6) boxes, scores and classes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).reshape(1, 1, 1).expand(1, 300, 6)


def test_an_export_with_nms_built_in_is_refused_with_the_reason(tmp_path: Path) -> None:
    from tests.detectors_fakes import write_onnx

    write_onnx(_NmsExport(), tmp_path / "face_nms.onnx", dynamic=False)
    [entry] = DetectorLibrary([tmp_path]).entries()
    assert entry.refused is not None and "NMS built in" in entry.refused
