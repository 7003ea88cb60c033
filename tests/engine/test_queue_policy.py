"""Pure scheduling: model affinity within the fair order, its bound on passing a job over, estimates and ETAs."""

from __future__ import annotations

import pytest

from engine.queue_policy import MAX_PASSES, RunTimes, finish_times, pick_batch, pick_job


def test_with_nothing_loaded_the_head_of_the_fair_order_runs() -> None:
    assert pick_job([3, 1, 2], {1: "a", 2: "b", 3: "c"}, [], {}) == 3


def test_a_job_for_a_loaded_model_near_the_head_runs_first() -> None:
    assert pick_job([3, 1, 2], {1: "a", 2: "b", 3: "c"}, ["b"], {}) == 2


def test_affinity_looks_only_at_the_head_of_the_fair_order() -> None:
    order = [1, 2, 3, 4, 5]
    models = {1: "a", 2: "a", 3: "a", 4: "a", 5: "b"}
    assert pick_job(order, models, ["b"], {}, window=4) == 1


def test_a_job_passed_over_enough_times_runs_whatever_is_loaded() -> None:
    assert pick_job([1, 2], {1: "a", 2: "b"}, ["b"], {1: MAX_PASSES}) == 1


def test_no_job_waits_for_ever_behind_a_stream_of_jobs_for_the_loaded_model() -> None:
    pending = {0: "cold"}
    passed: dict[int, int] = {}
    picks = 0
    while 0 in pending:
        pending[len(pending) + picks + 1] = "hot"  # someone always has a job for the loaded model
        order = sorted(pending)
        chosen = pick_job(order, pending, ["hot"], passed)
        for seq in order[: order.index(chosen)]:
            passed[seq] = passed.get(seq, 0) + 1
        del pending[chosen]
        picks += 1
    assert picks == MAX_PASSES + 1


def test_run_times_know_nothing_until_a_job_finishes_then_fall_back_across_models() -> None:
    times = RunTimes(weight=0.5)
    assert times.estimate("a", 10.0) is None
    times.record("a", 10.0, 20.0)
    assert times.estimate("a", 5.0) == pytest.approx(10.0)
    assert times.estimate("new", 10.0) == pytest.approx(20.0)
    times.record("a", 10.0, 40.0)
    assert times.estimate("a", 10.0) == pytest.approx(30.0)  # a moving average, not the last run alone


def test_finish_times_spread_waiting_jobs_over_the_workers() -> None:
    assert finish_times([5.0], 2, [10.0, 10.0, 10.0]) == [10.0, 15.0, 20.0]
    assert finish_times([], 1, [3.0, 4.0]) == [3.0, 7.0]
    assert finish_times([-2.0], 1, [3.0]) == [3.0]  # a job over its estimate is counted as nearly done


def test_a_batch_takes_compatible_jobs_from_the_head_of_the_fair_order_only() -> None:
    order = [1, 2, 3, 4, 5, 6]
    keys = {1: "a", 2: "b", 3: "a", 4: "a", 5: "a", 6: "a"}
    images = dict.fromkeys(order, 1)
    assert pick_batch(order, 1, keys, images, max_images=8, window=4) == [1, 3, 4]  # 5 and 6 are too far back


def test_a_batch_stops_at_the_image_limit_and_one_turns_batching_off() -> None:
    order = [1, 2, 3]
    keys = dict.fromkeys(order, "a")
    images = {1: 2, 2: 2, 3: 1}
    assert pick_batch(order, 1, keys, images, max_images=3) == [1, 3]
    assert pick_batch(order, 1, keys, images, max_images=1) == [1]


def test_a_job_that_cannot_batch_runs_alone() -> None:
    assert pick_batch([1, 2], 1, {1: None, 2: None}, {1: 1, 2: 1}, max_images=8) == [1]


def test_the_head_picked_by_affinity_takes_its_companions_from_the_same_window() -> None:
    order = [1, 2, 3]
    assert pick_batch(order, 2, {1: "a", 2: "b", 3: "b"}, dict.fromkeys(order, 1), max_images=4) == [2, 3]
