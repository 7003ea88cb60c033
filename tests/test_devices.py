"""EASEL_DEVICE as a list: one engine and one worker per device, sharing the LoRA library and embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest

import main
from config.settings import SettingsError, load_settings
from engine.executor import worker_devices


def test_a_device_list_is_one_entry_per_worker() -> None:
    assert load_settings(device="cuda:0, cuda:1").devices == ["cuda:0", "cuda:1"]
    assert load_settings(device="auto").devices == ["auto"]


@pytest.mark.parametrize("bad", ["auto,cuda:0", "cuda:0,cuda:0", "cuda:0;cuda:1", "gpu9000"])
def test_bad_device_lists_are_refused_with_the_variable_named(bad: str) -> None:
    with pytest.raises(SettingsError, match="EASEL_DEVICE"):
        load_settings(device=bad)


def test_auto_without_cuda_is_one_cpu_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert worker_devices(["auto"]) == ["cpu"]


def test_auto_means_every_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    assert worker_devices(["auto"]) == ["cuda:0", "cuda:1"]


def test_each_device_gets_an_engine_and_they_share_loras_and_embeddings(tmp_path: Path) -> None:
    # mps is never touched here: an engine loads nothing until its first job.
    settings = load_settings(device="cpu,mps", models_dir=tmp_path / "models", data_dir=tmp_path / "data")
    side = main.build_engine_side(settings, previews=False, load_at_start=False)
    engines = side.executor.engines
    assert [e.device for e in engines] == ["cpu", "mps"]
    for engine in engines:
        assert engine.loras is side.loras
        assert engine.loader.embeddings is side.embeddings
        assert engine.blobs is side.blobs
