"""The command line's `describe` on a tiny random tagger, and `models` listing it (in-process: `main.main`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import main
from tests.taggers_fakes import write_tagger


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in [k for k in os.environ if k.startswith("EASEL_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("EASEL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EASEL_DEVICE", "cpu")
    monkeypatch.chdir(tmp_path)
    write_tagger(tmp_path / "models" / "tagger" / "wd-tiny-tagger")
    return tmp_path / "models"


def test_describe_prints_the_tags_and_the_rating(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "art.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(image)
    assert main.main(["describe", str(image), "--threshold", "0.2"]) == 0
    out, err = capsys.readouterr()
    assert "rating: " in err and "tagger wd-tiny-tagger" in err
    tags = out.strip().split(", ")
    assert tags and all(tag and "_" not in tag.replace("^_^", "") for tag in tags)
    assert main.main(["models"]) == 0
    assert "wd-tiny-tagger\ttagger, WD14 tagger, 64 px, 48 tags" in capsys.readouterr().out


def test_describe_refuses_what_is_not_an_image_and_an_unknown_tagger(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    assert main.main(["describe", str(text)]) == 2
    assert "not a PNG, JPEG or WebP image" in capsys.readouterr().err
    image = tmp_path / "art.png"
    Image.new("RGB", (32, 32)).save(image)
    assert main.main(["describe", str(image), "--tagger", "wd-nothing"]) == 2
    assert "Unknown tagger 'wd-nothing'" in capsys.readouterr().err
