"""Engine faults on the real engine: out of memory names a batch or size that fits and leaves the engine working;
an image that decodes to NaN is never returned (it would be a black square); a checkpoint that fails to load or
whose tensors do not fit its architecture is refused with the reason, and the next job runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.errors import GenerationFailedError, ModelUnavailableError, OutOfMemoryError
from engine.models.registry import ModelRegistry
from engine.models.single_file import export_single_file
from engine.pipeline import DiffusersEngine, out_of_memory_message
from tests.engine.conftest import tiny_params


@pytest.fixture
def tight(engine: DiffusersEngine) -> Iterator[DiffusersEngine]:
    """The tiny model on a "GPU" that holds two 64x64 latents' worth of UNet rows (with CFG, one image's two
    rows each) and raises torch's own out-of-memory error beyond that, mid-denoise."""
    unet = engine.load("builtin:tiny").pipe.unet
    forward = unet.forward

    def limited(sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if sample.shape[0] * sample.shape[2] * sample.shape[3] > 4 * 8 * 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(sample, *args, **kwargs)

    unet.forward = limited
    yield engine
    unet.forward = forward


def test_out_of_memory_names_a_batch_that_fits_and_the_engine_goes_on(tight: DiffusersEngine) -> None:
    assert len(tight.generate(tiny_params(batch_size=2))) == 2  # fits: 2 images, 4 UNet rows
    with pytest.raises(OutOfMemoryError, match=r"making 4 image\(s\) at 64x64; a batch of 2 at that size should fit"):
        tight.generate(tiny_params(batch_size=4))
    assert len(tight.generate(tiny_params(batch_size=2))) == 2


def test_out_of_memory_before_anything_fitted_names_a_smaller_size(tight: DiffusersEngine) -> None:
    with pytest.raises(OutOfMemoryError, match=r"making 1 image\(s\) at 128x128; 1 image at 64x64 should fit"):
        tight.generate(tiny_params(width=128, height=128))
    assert len(tight.generate(tiny_params(width=64, height=64))) == 1


def test_the_out_of_memory_advice_keeps_the_aspect_and_never_goes_under_64() -> None:
    assert out_of_memory_message(1216, 832, 1, None).endswith("1 image at 832x576 should fit.")
    assert out_of_memory_message(512, 512, 4, 512 * 512 * 3).endswith("a batch of 3 at that size should fit.")
    assert out_of_memory_message(1024, 1024, 2, 512 * 512).endswith("1 image at 512x512 should fit.")
    assert out_of_memory_message(64, 64, 1, None).endswith("1 image at 64x64 should fit.")


def test_an_image_that_decodes_to_nan_is_refused_not_returned_black(
    engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine import pipeline

    real = pipeline.decode
    monkeypatch.setattr(pipeline, "decode", lambda vae, latents: real(vae, latents) * float("nan"))
    with pytest.raises(GenerationFailedError, match="NaN"):
        engine.generate(tiny_params())
    monkeypatch.setattr(pipeline, "decode", real)
    assert len(engine.generate(tiny_params())) == 1


def test_a_damaged_checkpoint_is_refused_with_the_reason_and_the_next_job_runs(
    engine: DiffusersEngine, tmp_path: Path, engine_dirs: tuple[Path, Path]
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    registry = ModelRegistry(models, engine_dirs[1])
    damaged = DiffusersEngine(registry, "cpu")
    with pytest.raises(ModelUnavailableError, match="broken"):
        damaged.load("broken")
    assert len(damaged.generate(tiny_params())) == 1


def test_a_checkpoint_whose_tensors_do_not_fit_its_architecture_is_refused_naming_a_tensor_and_both_shapes(
    engine: DiffusersEngine, tmp_path: Path, engine_dirs: tuple[Path, Path]
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    path = models / "misfit.safetensors"
    # The tiny model's tensors in an A1111-layout file without its settings file: its keys say SD 1.x, its shapes
    # are the tiny ones.
    export_single_file(engine.load("builtin:tiny").pipe, path)
    misfit = DiffusersEngine(ModelRegistry(models, engine_dirs[1]), "cpu")
    with pytest.raises(ModelUnavailableError, match=r"'misfit' does not fit the SD 1\.x architecture") as refused:
        misfit.load("misfit")
    assert "its tensor" in str(refused.value) and "the architecture's is [" in str(refused.value)
    assert len(misfit.generate(tiny_params())) == 1
