"""The command line's detectors: `python main.py convert-detector` on a trusted `.pt` and on a malicious one, and
`models` listing what the folder holds (in-process: `main.main`, as the process runs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

import main
from tests.detectors_fakes import tiny_yolo, write_malicious_pt, write_ultralytics_pt


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ("EASEL_MODELS_DIR", "EASEL_DETECTOR_DIR", "EASEL_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("EASEL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "adetailer").mkdir(parents=True)
    return tmp_path / "models" / "adetailer"


def test_convert_detector_writes_safetensors_that_models_lists(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_ultralytics_pt(tiny_yolo(), folder / "face_yolov8n.pt")
    assert main.main(["models"]) == 0
    assert "face_yolov8n\trefused: an ultralytics pickle" in capsys.readouterr().out
    assert main.main(["convert-detector", "face_yolov8n.pt"]) == 0  # a bare name is found in the detector folder
    assert "wrote " in capsys.readouterr().err and (folder / "face_yolov8n.safetensors").exists()
    assert main.main(["models"]) == 0
    assert "face_yolov8n\tdetector, YOLOv8 detection, 1 class" in capsys.readouterr().out


def test_convert_detector_refuses_a_malicious_pickle_and_runs_nothing(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "pwned.txt"
    write_malicious_pt(folder / "face_yolov8n.pt", target)
    assert main.main(["convert-detector", str(folder / "face_yolov8n.pt")]) == 2
    err = capsys.readouterr().err
    assert "asks to run code that is not part of a YOLOv8 detector: io.open" in err
    assert not target.exists() and not (folder / "face_yolov8n.safetensors").exists()
