"""Cross-job batching on the real engine: compatible jobs of several users run as one batch, and each gets exactly its
own images, equal to what the job gives alone up to the last bit of rounding a bigger matmul batch moves (at most 1
of 255 per channel on this CPU); the parameter text and seeds are identical."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from engine.embeddings import EmbeddingDB
from engine.errors import Cancelled, InvalidParamsError
from engine.executor import GpuExecutor
from engine.jobs import Finished, Job
from engine.params import GenerationParams
from engine.pipeline import DiffusersEngine, JobHooks, RawImage
from tests.engine.conftest import tiny_params


def jobs_of(model: str) -> list[GenerationParams]:
    base = tiny_params(model=model, steps=4)
    return [
        base,
        base.replace(prompt="a [cat:dog:0.5] on a (mat:1.2)", seed=7, negative_prompt="blur", batch_size=2),
        base.replace(prompt=", ".join(["a long prompt about the sea"] * 12), seed=99, subseed=5, subseed_strength=0.3),
    ]


def assert_same_images(alone: list[RawImage], batched: list[RawImage]) -> None:
    assert [r.seed for r in batched] == [r.seed for r in alone]
    assert [r.infotext for r in batched] == [r.infotext for r in alone]
    for a, b in zip(alone, batched, strict=True):
        assert np.abs(np.asarray(a.image).astype(int) - np.asarray(b.image).astype(int)).max() <= 1


@pytest.mark.parametrize("model", ["builtin:tiny", "builtin:tiny-xl"])
@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M SDE", "Heun", "DDIM", "UniPC"])
def test_each_job_of_a_batch_gets_its_own_images_as_if_alone(engine: DiffusersEngine, model: str, sampler: str) -> None:
    jobs = [p.replace(sampler=sampler) for p in jobs_of(model)]
    plans = [engine.plan(p) for p in jobs]
    assert len({plan.batch_key() for plan in plans}) == 1
    outcomes = engine.generate_batch(plans, [JobHooks()] * len(plans))
    for params, outcome in zip(jobs, outcomes, strict=True):
        assert not isinstance(outcome, Exception)
        assert_same_images(engine.generate(params), outcome)


def test_img2img_jobs_with_their_own_init_images_batch(engine: DiffusersEngine) -> None:
    digests = []
    for colour in ((200, 30, 30), (30, 200, 30)):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), colour).save(buffer, format="PNG")
        digests.append(engine.blobs.put(buffer.getvalue()))
    jobs = [tiny_params(init_image=d, denoising_strength=0.5, seed=s) for d, s in zip(digests, (1, 2), strict=True)]
    outcomes = engine.generate_batch([engine.plan(p) for p in jobs], [JobHooks(), JobHooks()])
    for params, outcome in zip(jobs, outcomes, strict=True):
        assert not isinstance(outcome, Exception)
        assert_same_images(engine.generate(params), outcome)


def test_hires_jobs_batch(engine: DiffusersEngine) -> None:
    jobs = [tiny_params(enable_hr=True, denoising_strength=0.5, prompt=p) for p in ("a cat", "a dog at night")]
    outcomes = engine.generate_batch([engine.plan(p) for p in jobs], [JobHooks(), JobHooks()])
    for params, outcome in zip(jobs, outcomes, strict=True):
        assert not isinstance(outcome, Exception)
        assert_same_images(engine.generate(params), outcome)


def test_a_job_whose_prompt_cannot_be_encoded_fails_alone(engine: DiffusersEngine, tmp_path: Path) -> None:
    (tmp_path / "broken.safetensors").write_bytes(b"not safetensors")
    other = DiffusersEngine(engine.registry, "cpu", embeddings=EmbeddingDB([tmp_path]))
    good, bad = tiny_params(), tiny_params(prompt="a broken lighthouse")
    outcomes = other.generate_batch([other.plan(good), other.plan(bad)], [JobHooks(), JobHooks()])
    assert isinstance(outcomes[1], InvalidParamsError) and "broken" in str(outcomes[1])
    assert not isinstance(outcomes[0], Exception)
    assert_same_images(other.generate(good), outcomes[0])


def test_a_cancelled_job_of_a_batch_gets_no_images_and_the_others_do(engine: DiffusersEngine) -> None:
    keep, drop = tiny_params(prompt="keep"), tiny_params(prompt="drop", seed=5)
    outcomes = engine.generate_batch(
        [engine.plan(keep), engine.plan(drop)], [JobHooks(), JobHooks(is_cancelled=lambda: True)]
    )
    assert isinstance(outcomes[1], Cancelled)
    assert not isinstance(outcomes[0], Exception)
    assert_same_images(engine.generate(keep), outcomes[0])


def test_dpm_adaptive_never_batches(engine: DiffusersEngine) -> None:
    assert engine.plan(tiny_params(sampler="DPM adaptive")).batch_key() is None


@pytest.mark.parametrize(
    "change",
    [{"width": 96}, {"steps": 5}, {"sampler": "Euler a"}, {"cfg_scale": 5.0}, {"model": "builtin:tiny-xl"},
     {"enable_hr": True, "denoising_strength": 0.5}, {"prompt": "a AND b"}, {"clip_skip": 2}],
)  # fmt: skip
def test_incompatible_jobs_have_other_batch_keys(engine: DiffusersEngine, change: dict[str, Any]) -> None:
    assert engine.plan(tiny_params(**change)).batch_key() != engine.plan(tiny_params()).batch_key()


def test_what_may_differ_in_a_batch_keeps_the_key(engine: DiffusersEngine) -> None:
    base = engine.plan(tiny_params()).batch_key()
    for change in (
        {"prompt": "x"},
        {"seed": 3},
        {"negative_prompt": "y"},
        {"batch_size": 2},
        {"subseed_strength": 0.2},
    ):
        assert engine.plan(tiny_params(**change)).batch_key() == base, change


async def test_the_executor_batches_jobs_of_several_users_on_the_real_engine(
    engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    real = engine.generate_batch

    def counting(plans: Any, hooks: Any) -> Any:
        batches.append(len(plans))
        return real(plans, hooks)

    monkeypatch.setattr(engine, "generate_batch", counting)
    executor = GpuExecutor(engine, max_queued_per_user=3, max_queued_total=10, max_batch_images=4)
    await executor.start()
    params = [tiny_params(steps=30), tiny_params(prompt="a cat", seed=1), tiny_params(prompt="a dog", seed=2)]
    try:
        tickets = [await executor.submit(Job(f"j{i}", f"user{i}", p)) for i, p in enumerate(params)]
        results = []
        for ticket in tickets:
            events = [event async for event in ticket.events]
            assert isinstance(events[-1], Finished)
            results.append(events[-1].result)
    finally:
        await executor.close()
    assert batches == [1, 2]  # the first ran alone (nothing was waiting); the two that arrived meanwhile together
    for p, result in zip(params, results, strict=True):
        alone = engine.generate(p)
        assert [image.seed for image in result.images] == [r.seed for r in alone]
        assert result.infotext == alone[0].infotext
        with Image.open(io.BytesIO(result.images[0].png)) as png:
            assert np.abs(np.asarray(png).astype(int) - np.asarray(alone[0].image).astype(int)).max() <= 1


def test_an_sdxl_embedding_used_by_one_job_is_in_only_its_ti_hashes(engine: DiffusersEngine, tmp_path: Path) -> None:
    save_file(
        {"emb_params": torch.randn(1, 32, generator=torch.Generator().manual_seed(1))},
        str(tmp_path / "ink.safetensors"),
    )
    other = DiffusersEngine(engine.registry, "cpu", embeddings=EmbeddingDB([tmp_path]))
    with_ink, without = tiny_params(prompt="an ink lighthouse"), tiny_params(prompt="a lighthouse", seed=3)
    outcomes = other.generate_batch([other.plan(with_ink), other.plan(without)], [JobHooks(), JobHooks()])
    assert not isinstance(outcomes[0], Exception) and not isinstance(outcomes[1], Exception)
    assert "TI hashes" in outcomes[0][0].infotext and "TI hashes" not in outcomes[1][0].infotext
