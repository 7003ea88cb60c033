"""Every job's cost is bounded before it is queued: `AND` parts and LoRA tags per prompt, the work of one job and
of one user's jobs together (the plan's cost), with a message that says what to lower."""

from __future__ import annotations

import asyncio

import pytest

from config.settings import Settings
from engine.errors import InvalidParamsError, QueueFullError
from engine.executor import GpuExecutor
from engine.jobs import Job
from engine.params import GenerationParams
from engine.plan import MAX_AND_PARTS, MAX_LORA_TAGS, ModelTraits, make_plan
from engine.queue_policy import CostLimits, job_cost_problem, user_cost_problem
from tests.engine.conftest import tiny_params
from tests.engine.test_executor import GatedEngine

SDXL_HIRES_BATCH = GenerationParams(
    prompt="a castle", model="m", seed=1, steps=150, width=1024, height=1024, batch_size=4, enable_hr=True,
    hr_scale=2.0, denoising_strength=0.7,
)  # fmt: skip


def test_too_many_and_parts_or_lora_tags_are_refused_before_anything_runs() -> None:
    with pytest.raises(InvalidParamsError, match=rf"^The prompt has 666 `AND` parts; at most {MAX_AND_PARTS}"):
        make_plan(tiny_params(prompt=" AND ".join(["a"] * 666)))
    with pytest.raises(
        InvalidParamsError, match=rf"^The prompts call 285 LoRAs; one job may use at most {MAX_LORA_TAGS}"
    ):
        make_plan(tiny_params(prompt=" ".join(f"<lora:l{i}:1>" for i in range(285))))
    make_plan(tiny_params(prompt=" AND ".join(["a"] * MAX_AND_PARTS)))  # at the limit: fine


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "Heun", "DPM++ 2S a"])
def test_the_default_ceiling_passes_a_150_step_hires_sdxl_batch_of_4(sampler: str) -> None:
    defaults = Settings.model_construct()
    limits = CostLimits(defaults.max_job_cost, defaults.max_user_cost)
    cost = make_plan(SDXL_HIRES_BATCH.replace(sampler=sampler), ModelTraits(family="sdxl")).cost()
    assert job_cost_problem(cost, limits) is None
    assert user_cost_problem(cost, 0.0, limits) is None


def test_an_over_costly_job_is_told_what_to_lower() -> None:
    text = job_cost_problem(50_025, CostLimits(per_job=25_000))
    assert text is not None and text.startswith("This job is 50,025 units of work")
    assert "at most 25,000 per job" in text and "`AND` parts" in text


def test_a_users_jobs_together_are_bounded_but_a_lone_job_always_may_wait() -> None:
    limits = CostLimits(per_job=100, per_user=150)
    assert user_cost_problem(100, 0, limits) is None
    text = user_cost_problem(100, 80, limits)
    assert text is not None and "80 units of work and this one is 100; together at most 150" in text


async def test_the_executor_refuses_an_over_costly_job_and_a_users_excess_before_queueing() -> None:
    engine = GatedEngine()
    engine.gate.clear()
    cost = make_plan(tiny_params()).cost()
    executor = GpuExecutor([engine], max_queued_per_user=5, max_queued_total=5, costs=CostLimits(cost * 3, cost * 2))
    try:
        with pytest.raises(InvalidParamsError, match="units of work"):
            await executor.submit(Job("big", "1", tiny_params(batch_size=4)))
        await executor.submit(Job("one", "1", tiny_params()))
        await executor.submit(Job("two", "1", tiny_params()))
        with pytest.raises(QueueFullError, match="together at most"):
            await executor.submit(Job("three", "1", tiny_params()))
        await executor.submit(Job("other", "2", tiny_params()))  # another user's share is their own
        assert executor.queue_length() == 3
    finally:
        engine.gate.set()
        await asyncio.wait_for(executor.close(), 10)
