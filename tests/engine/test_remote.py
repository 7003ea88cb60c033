"""GPU workers on other machines through a real redis-server: the bot's pool and in-process workers (a fake engine,
real transport). Skipped with a reason only where redis-server is not installed (.ci/run installs it)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.errors import ModelUnavailableError
from engine.jobs import Failed, Finished, Job, Progress, Queued, Started, WasCancelled
from engine.params import GenerationParams
from engine.plan import GenerationPlan, make_plan
from engine.queue_policy import finish_times_on
from engine.remote.pool import RemotePool
from engine.remote.transport import HELLO, RESULTS, connect, jobs_key, safe_url
from engine.remote.wire import WorkerModel, encode_job
from tests.engine.remote_helpers import (
    following,
    job,
    run_all,
    start_worker,
    started_pool,
    until_workers,
)
from tests.waiting import wait_until, wait_until_async
from tools.redis_server import RedisServer, redis_binary, self_signed

pytestmark = [
    pytest.mark.slow,  # each test starts a redis-server
    pytest.mark.skipif(
        redis_binary() is None, reason="redis-server is not installed here (apt install redis-server; .ci/run does)"
    ),
]


async def results_read(url: str) -> bool:
    """Whether the results stream is empty (every result read by the pool, acknowledged and deleted)."""
    r = connect(url)
    try:
        return int(await r.xlen(RESULTS)) == 0
    finally:
        await r.aclose()


async def result_waiting(url: str) -> bool:
    r = connect(url)
    try:
        return int(await r.xlen(RESULTS)) > 0
    finally:
        await r.aclose()


@pytest.fixture
def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server  # type: ignore[misc]
    server.stop()


@pytest.fixture
async def pool(redis: RedisServer) -> AsyncIterator[RemotePool]:
    pool = await started_pool(redis.url)
    yield pool
    await pool.close()


async def test_two_workers_share_the_jobs_and_each_result_arrives_once(redis: RedisServer, pool: RemotePool) -> None:
    a = await start_worker(redis.url, "alpha-box", {"alpha": None}, step_seconds=0.02)
    b = await start_worker(redis.url, "beta-box", {"alpha": None}, step_seconds=0.02, joins=pool)
    tickets = [await pool.submit(job(f"{n:06x}", f"p{n}", user=str(n % 3 + 1))) for n in range(8)]
    outcomes = await run_all(tickets)
    assert all(isinstance(o.last, Finished) for o in outcomes)
    assert [sum(isinstance(e, Finished) for e in o.events) for o in outcomes] == [1] * 8
    assert sorted(a.engine.ran + b.engine.ran) == sorted(f"p{n}" for n in range(8))  # each ran once
    assert a.engine.ran and b.engine.ran  # both worked
    assert pool.worker_lines() == ["`alpha-box` (cpu; 1 models; idle)", "`beta-box` (cpu; 1 models; idle)"]
    finished = outcomes[0].last
    assert isinstance(finished, Finished) and finished.result.images[0].png.startswith(b"\x89PNG")
    assert any(isinstance(e, Started) for e in outcomes[0].events)
    assert any(isinstance(e, Progress) for e in outcomes[0].events)
    await a.shut()
    await b.shut()


async def test_affinity_routes_each_job_to_the_worker_holding_its_model(redis: RedisServer, pool: RemotePool) -> None:
    a = await start_worker(redis.url, "a", {"alpha": "aaaaaaaaaa"})
    b = await start_worker(redis.url, "b", {"beta": "bbbbbbbbbb"}, joins=pool)
    tickets = [await pool.submit(job(f"{n:06x}", f"p{n}", model="alpha" if n % 2 else "beta")) for n in range(6)]
    await run_all(tickets)
    assert sorted(a.engine.ran) == ["p1", "p3", "p5"]
    assert sorted(b.engine.ran) == ["p0", "p2", "p4"]
    await a.shut()
    await b.shut()


async def test_a_job_goes_to_the_free_worker_that_has_its_model_loaded(redis: RedisServer, pool: RemotePool) -> None:
    a = await start_worker(redis.url, "a", {"alpha": None, "gamma": None}, step_seconds=0.05, joins=pool)
    b = await start_worker(redis.url, "b", {"alpha": None}, joins=pool)
    busy = asyncio.create_task(run_all([await pool.submit(job("0000c0", "g", model="gamma", steps=20))]))
    await a.started()
    await run_all([await pool.submit(job("0000c1", "first alpha"))])  # a is busy: b runs it, and keeps alpha
    await busy
    await wait_until(lambda: all(not w.running for w in pool.workers()), what="both idle")
    for n in (2, 3):  # one at a time, both workers free each time
        await run_all([await pool.submit(job(f"0000c{n}", f"alpha {n}"))])
    assert b.engine.ran == ["first alpha", "alpha 2", "alpha 3"]
    assert a.engine.ran == ["g"]  # though a came first and is free: b holds alpha in memory
    await a.shut()
    await b.shut()


async def test_compatible_waiting_jobs_go_to_a_worker_as_one_batch(redis: RedisServer, pool: RemotePool) -> None:
    a = await start_worker(redis.url, "a", {"alpha": None}, step_seconds=0.02, max_images=3, batches=True, joins=pool)
    a.engine.gate.clear()  # the first job holds the worker while the others queue in the bot
    tickets = [await pool.submit(job("0000aa", "head", steps=5, cfg_scale=2.0))]
    await wait_until(lambda: bool(a.worker._running), what="the first job on the worker")
    tickets += [await pool.submit(job(f"0000b{n}", f"b{n}", user=str(n + 2))) for n in range(4)]
    a.engine.gate.set()
    outcomes = await run_all(tickets)
    assert all(isinstance(o.last, Finished) for o in outcomes)
    assert a.engine.batches == [["b0", "b1", "b2"]]  # three images per batch at most (the worker's say); b3 alone
    assert sorted(a.engine.ran) == ["b0", "b1", "b2", "b3", "head"]
    await a.shut()


async def test_a_job_whose_model_no_worker_has_waits_saying_so_then_runs(redis: RedisServer, pool: RemotePool) -> None:
    a = await start_worker(redis.url, "a", {"alpha": None}, joins=pool)
    outcome, follow = await following(pool, job("00000a", "late", model="gamma"))
    await wait_until(lambda: bool(outcome.events), what="a queued event")
    first = outcome.events[0]
    assert isinstance(first, Queued) and first.waiting_for is not None and "gamma" in first.waiting_for
    g = await start_worker(redis.url, "g", {"gamma": None})
    await asyncio.wait_for(follow, 30)
    assert isinstance(outcome.last, Finished) and g.engine.ran == ["late"]
    await a.shut()
    await g.shut()


async def test_a_restarted_bot_still_knows_the_models_of_workers_away_now(redis: RedisServer) -> None:
    a = await start_worker(redis.url, "a", {"gamma": "cccccccccc"})
    first = await started_pool(redis.url)
    await until_workers(first, 1)
    await a.shut()
    await first.close()
    await asyncio.sleep(1.6)  # past the timeout: the worker is away, not connected
    told: list[dict[str, object]] = []
    second = await started_pool(redis.url, on_models=lambda models: told.append(dict(models)))
    assert second.workers() == [] and told and told[-1]["gamma"] == WorkerModel("gamma", "cccccccccc")
    outcome, follow = await following(second, job("0000d5", "later", model="gamma"))
    await wait_until(lambda: bool(outcome.events), what="a queued event")
    assert isinstance(outcome.events[0], Queued) and outcome.events[0].waiting_for == (
        "No GPU worker is connected; it starts when one connects."
    )
    back = await start_worker(redis.url, "a", {"gamma": "cccccccccc"})
    await asyncio.wait_for(follow, 90)
    assert isinstance(outcome.last, Finished) and back.engine.ran == ["later"]
    await back.shut()
    await second.close()


async def test_refuse_mode_refuses_a_model_no_worker_has(redis: RedisServer) -> None:
    pool = await started_pool(redis.url, missing="refuse")
    a = await start_worker(redis.url, "a", {"alpha": None}, joins=pool)
    with pytest.raises(ModelUnavailableError, match="No GPU worker connected has the model 'gamma'"):
        await pool.submit(job("00000b", "x", model="gamma"))
    await a.shut()
    await pool.close()


async def test_a_job_naming_another_hash_goes_to_no_worker_and_a_worker_refuses_it(
    redis: RedisServer, pool: RemotePool
) -> None:
    pool._model_hash = lambda name: "1234567890"
    a = await start_worker(redis.url, "a", {"alpha": "abcdefabcd"}, joins=pool)
    outcome, follow = await following(pool, job("00000c", "x"))
    await wait_until(lambda: bool(outcome.events), what="a queued event")
    assert isinstance(outcome.events[0], Queued) and outcome.events[0].waiting_for is not None
    assert a.engine.ran == []
    pool.cancel("00000c")
    await asyncio.wait_for(follow, 30)
    # Sent straight to the worker anyway (a bot that knew another hash), the job is refused, not drawn.
    r = connect(redis.url)
    await r.xadd(
        a.worker.key, encode_job(job("00000d", "y").__class__("00000d", "1", job("00000d", "y").params), "1234567890")
    )
    reply = await r.xread({RESULTS: "0"}, block=5000)
    fields = {k.decode(): v for k, v in reply[0][1][0][1].items()}
    assert fields["kind"] == b"failed" and b"different file" in fields["body"]
    assert a.engine.ran == []
    await r.aclose()
    await a.shut()


async def test_an_img2img_job_carries_its_init_image_to_the_worker(redis: RedisServer, tmp_path: Path) -> None:
    from engine.blobs import BlobStore
    from tests.fakes import tiny_png

    bot_blobs, worker_blobs = BlobStore(tmp_path / "bot-blobs"), BlobStore(tmp_path / "worker-blobs")
    digest = bot_blobs.put(tiny_png(64, 64, 3))
    pool = await started_pool(redis.url, blobs=bot_blobs)
    a = await start_worker(redis.url, "a", {"alpha": None}, blobs=worker_blobs, joins=pool)
    gone = "0" * 64  # an upload the bot no longer has
    outcomes = await run_all(
        [
            await pool.submit(job("00005a", "img2img", init_image=digest, denoising_strength=0.5)),
            await pool.submit(job("00005b", "lost", init_image=gone, denoising_strength=0.5)),
        ]
    )
    assert isinstance(outcomes[0].last, Finished) and worker_blobs.get(digest) == bot_blobs.get(digest)
    failed = outcomes[1].last
    assert isinstance(failed, Failed) and "no longer stored" in str(failed.error)
    assert a.engine.ran == ["img2img"]
    await a.shut()
    await pool.close()


async def test_an_upscale_job_travels_to_a_worker_with_its_image(redis: RedisServer, tmp_path: Path) -> None:
    from engine.blobs import BlobStore
    from engine.params import Limits, extras_params
    from tests.fakes import tiny_png

    bot_blobs, worker_blobs = BlobStore(tmp_path / "bot-blobs"), BlobStore(tmp_path / "worker-blobs")
    digest = bot_blobs.put(tiny_png(300, 200, 3))
    pool = await started_pool(redis.url, blobs=bot_blobs)
    a = await start_worker(redis.url, "a", {"alpha": None}, blobs=worker_blobs, joins=pool)
    big = extras_params(  # past the bot's default ceiling: the worker does not second-guess the bot's limits
        init_image=digest, source_size=(3000, 2000), upscaler="4x-UltraSharp", model="alpha",
        limits=Limits(max_hires_pixels=1 << 26, max_hires_side=1 << 14), scale=2,
    )  # fmt: skip
    [outcome] = await run_all([await pool.submit(Job("0000e1", "1", big))])
    assert isinstance(outcome.last, Finished), outcome.last
    assert worker_blobs.get(digest) == bot_blobs.get(digest)
    await a.shut()
    await pool.close()


async def test_a_worker_announces_at_once_and_its_hashes_as_they_are_computed(
    redis: RedisServer, pool: RemotePool
) -> None:
    a = await start_worker(redis.url, "a", {"alpha": "aaaaaaaaaa", "beta": "bbbbbbbbbb"}, cached=False, joins=pool)
    await wait_until(
        lambda: {m.name: m.hash for m in pool.workers()[0].models} == {"alpha": "aaaaaaaaaa", "beta": "bbbbbbbbbb"},
        what="the hashes computed after start-up to be announced",
    )
    assert sorted(a.worker.registry.hashed) == ["alpha", "beta"]  # type: ignore[attr-defined]
    await a.shut()


async def test_cancel_while_queued_and_while_running(redis: RedisServer, pool: RemotePool) -> None:
    a = await start_worker(redis.url, "a", {"alpha": None}, step_seconds=0.1, joins=pool)
    running, t1 = await following(pool, job("0000a1", "long", steps=40))
    waiting, t2 = await following(pool, job("0000a2", "next", steps=40, cfg_scale=3.0))
    await wait_until(lambda: any(isinstance(e, Progress) for e in running.events), limit_s=30, what="progress")
    assert pool.cancel("0000a2")  # still in the bot's queue
    await asyncio.wait_for(t2, 30)
    assert isinstance(waiting.last, WasCancelled)
    assert pool.cancel("0000a1")  # on the worker
    await asyncio.wait_for(t1, 30)
    assert isinstance(running.last, WasCancelled)
    assert a.engine.steps_done["long"] < 40 and a.engine.ran == []
    assert pool.queue_length() == 0
    await a.shut()


async def test_a_dead_worker_s_job_completes_once_elsewhere(redis: RedisServer, pool: RemotePool) -> None:
    a = await start_worker(redis.url, "a", {"alpha": None}, step_seconds=0.05, joins=pool)
    outcome, follow = await following(pool, job("0000b1", "survivor", steps=30))
    await a.started("survivor", 2)
    await a.die()
    b = await start_worker(redis.url, "b", {"alpha": None}, step_seconds=0.01)
    await asyncio.wait_for(follow, 90)
    assert isinstance(outcome.last, Finished)
    assert sum(isinstance(e, Finished) for e in outcome.events) == 1
    assert b.engine.ran == ["survivor"]
    await b.shut()


async def test_a_job_three_times_longer_than_the_timeout_stays_on_its_beating_worker(redis: RedisServer) -> None:
    pool = await started_pool(redis.url, timeout=1.0)
    a = await start_worker(redis.url, "a", {"alpha": None}, step_seconds=0.1, heartbeat=0.2, joins=pool)
    outcome, follow = await following(pool, job("0000ab", "long", steps=30))
    await a.started()
    b = await start_worker(redis.url, "b", {"alpha": None})  # free, and would get the job if it were moved
    await asyncio.wait_for(follow, 90)
    assert isinstance(outcome.last, Finished)
    assert a.engine.ran == ["long"] and b.engine.ran == []
    await a.shut()
    await b.shut()
    await pool.close()


async def test_a_worker_thought_dead_that_finishes_after_all_is_not_posted_twice(redis: RedisServer) -> None:
    pool = await started_pool(redis.url, timeout=1.0)
    slow = await start_worker(redis.url, "slow", {"alpha": None}, step_seconds=0.1, heartbeat=0.2, joins=pool)
    outcome, follow = await following(pool, job("0000c1", "twice", steps=25))
    await slow.started("twice", 1)
    # Its heartbeats stop (a network partition), but it goes on drawing and will report.
    for task in asyncio.all_tasks():
        if task.get_name() == f"easel-worker-{slow.worker.boot}-heartbeat":
            task.cancel()
    fast = await start_worker(redis.url, "fast", {"alpha": None}, step_seconds=0.01)
    await asyncio.wait_for(follow, 90)
    await wait_until(lambda: "twice" in slow.engine.ran or slow.engine.steps_done["twice"] >= 25, limit_s=30)
    # Its late result has gone out and the pool has read (and dropped) it.
    await wait_until(lambda: not slow.worker._running, limit_s=30, what="the slow worker's late result")
    await wait_until_async(lambda: results_read(redis.url), limit_s=30, what="the pool to read every result")
    assert [type(e) for e in outcome.events].count(Finished) == 1
    assert fast.engine.ran == ["twice"]
    await fast.shut()
    await slow.shut()
    await pool.close()


async def test_a_bot_restart_with_jobs_on_workers_loses_nothing_and_posts_nothing_twice(redis: RedisServer) -> None:
    a = await start_worker(redis.url, "a", {"alpha": None}, step_seconds=0.05)
    first = await started_pool(redis.url)
    await until_workers(first, 1)
    jobs = [job(f"0000d{n}", f"r{n}", steps=10, cfg_scale=float(n + 1)) for n in range(3)]
    for j in jobs:
        await first.submit(j)
    await a.started()
    await first.close()  # the bot stops; the store keeps the jobs and the next start submits them again
    await wait_until(lambda: len(a.engine.ran) == 1 and not a.worker._running, limit_s=30, what="the running job")
    second = await started_pool(redis.url)
    outcomes = await run_all([await second.submit(j) for j in jobs])
    assert all(isinstance(o.last, Finished) for o in outcomes)
    assert sorted(a.engine.ran) == ["r0", "r1", "r2"]  # none ran twice
    await a.shut()
    await second.close()


async def test_redis_restart_mid_job_the_job_finishes_and_the_next_runs(redis: RedisServer, pool: RemotePool) -> None:
    a = await start_worker(redis.url, "a", {"alpha": None}, step_seconds=0.05, joins=pool)
    outcome, follow = await following(pool, job("0000e1", "through", steps=30))
    await a.started("through", 2)
    redis.restart()  # AOF: the streams, groups and entries survive
    await asyncio.wait_for(follow, 90)
    assert isinstance(outcome.last, Finished)
    after = await run_all([await pool.submit(job("0000e2", "after"))])
    assert isinstance(after[0].last, Finished)
    assert a.engine.ran == ["through", "after"]
    await a.shut()


async def test_a_result_made_while_the_bot_was_down_survives_a_redis_restart(redis: RedisServer) -> None:
    a = await start_worker(redis.url, "a", {"alpha": None}, step_seconds=0.02)
    first = await started_pool(redis.url)
    await until_workers(first, 1)
    await first.submit(job("00008a", "kept", steps=10))
    await a.started()
    await first.close()  # the bot is down...
    await wait_until(lambda: a.engine.ran == ["kept"], limit_s=30, what="the worker to finish")
    await wait_until_async(lambda: result_waiting(redis.url), limit_s=30, what="the result in the stream")
    redis.restart()  # ...through a Redis restart (append-only file)
    second = await started_pool(redis.url)
    [outcome] = await run_all([await second.submit(job("00008a", "kept", steps=10))])
    assert isinstance(outcome.last, Finished) and a.engine.ran == ["kept"]  # delivered, not drawn again
    await a.shut()
    await second.close()


async def test_malformed_entries_from_a_worker_are_dropped_and_the_pool_goes_on(
    redis: RedisServer, pool: RemotePool
) -> None:
    r = connect(redis.url)
    await r.xadd(HELLO, {"worker": b"evil", "boot": b"0123456789abcdef", "body": b'{"models": "all"}'})
    await r.xadd(RESULTS, {"job_id": b"../../etc", "kind": b"finished"})
    a = await start_worker(redis.url, "a", {"alpha": None}, joins=pool)
    outcome, follow = await following(pool, job("0000f1", "fine"))
    # A forged result for the job, from no worker that holds it, with a wrong image: dropped.
    await r.xadd(
        RESULTS, {"job_id": b"0000f1", "worker": b"x", "boot": b"0123456789abcdef", "kind": b"finished", "body": b"{}"}
    )
    await asyncio.wait_for(follow, 90)
    assert isinstance(outcome.last, Finished) and [w.worker for w in pool.workers()] == ["a"]
    await r.aclose()
    await a.shut()


async def test_a_worker_cannot_answer_a_job_it_was_not_given(redis: RedisServer, pool: RemotePool) -> None:
    from engine.jobs import GeneratedImage, JobResult
    from engine.remote.wire import encode_event
    from tests.fakes import tiny_png

    a = await start_worker(redis.url, "a", {"alpha": None}, step_seconds=0.05, joins=pool)
    outcome, follow = await following(pool, job("00009a", "honest", steps=20))
    await a.started("honest", 1)
    # Another worker's credentials, a well-formed result with a real PNG of the right size: still not its job.
    forged = encode_event(
        Finished(JobResult((GeneratedImage(tiny_png(64, 64, 1), 1, "forged", 64, 64),), "forged", 1.0))
    )
    r = connect(redis.url)
    await r.xadd(RESULTS, {**forged, "job_id": b"00009a", "worker": b"mallory", "boot": b"0123456789abcdef"})
    await asyncio.wait_for(follow, 90)
    finished = outcome.last
    assert isinstance(finished, Finished) and finished.result.infotext != "forged"
    await r.aclose()
    await a.shut()


async def test_a_worker_answers_a_job_it_cannot_read_with_a_failure(redis: RedisServer) -> None:
    a = await start_worker(redis.url, "a", {"alpha": None})
    r = connect(redis.url)
    await a.worker._create_group()
    await r.xadd(a.worker.key, {"kind": b"job", "job_id": b"00006a", "user_id": b"1", "params": b'{"steps": "all"}'})
    reply = await r.xread({RESULTS: "0"}, block=5000)
    fields = {k.decode(): v for k, v in reply[0][1][0][1].items()}
    assert fields["job_id"] == b"00006a" and fields["kind"] == b"failed" and b"could not read" in fields["body"]
    assert a.engine.ran == []
    await r.aclose()
    await a.shut()


async def test_a_worker_shutting_down_gives_its_job_back(redis: RedisServer) -> None:
    pool = await started_pool(redis.url, timeout=30.0)  # long: what moves the job is the worker's word, not its silence
    a = await start_worker(redis.url, "a", {"alpha": None}, step_seconds=0.05, joins=pool)
    outcome, follow = await following(pool, job("0000f2", "handed", steps=40))
    await a.started("handed", 2)
    await a.shut()
    await wait_until(lambda: pool.position("0000f2") == 1, limit_s=30, what="the job back in the queue")
    b = await start_worker(redis.url, "b", {"alpha": None})
    await asyncio.wait_for(follow, 30)
    assert isinstance(outcome.last, Finished) and b.engine.ran == ["handed"]
    assert not any(isinstance(e, Failed) for e in outcome.events)
    await b.shut()
    await pool.close()


async def test_a_restarted_worker_s_old_jobs_rerun_at_once_not_after_the_timeout(redis: RedisServer) -> None:
    pool = await started_pool(redis.url, timeout=30.0)
    old = await start_worker(redis.url, "box", {"alpha": None}, step_seconds=0.05, joins=pool)
    outcome, follow = await following(pool, job("00001a1", "again", steps=30))
    await old.started("again", 2)
    await old.die()
    new = await start_worker(redis.url, "box", {"alpha": None})  # the same machine, started again (systemd)
    await asyncio.wait_for(follow, 90)
    assert isinstance(outcome.last, Finished) and new.engine.ran == ["again"]
    await new.shut()
    await pool.close()


async def test_an_outage_longer_than_the_timeout_moves_no_job_and_runs_none_twice(redis: RedisServer) -> None:
    pool = await started_pool(redis.url, timeout=1.5)
    a = await start_worker(redis.url, "a", {"alpha": None}, step_seconds=0.1, heartbeat=0.3)
    b = await start_worker(redis.url, "b", {"alpha": None}, step_seconds=0.1, heartbeat=0.3, joins=pool)
    outcomes, follows = zip(
        *[await following(pool, job(f"00002{n}", f"h{n}", steps=40, cfg_scale=n + 1.0)) for n in range(2)],
        strict=True,
    )
    await wait_until(lambda: len(a.engine.steps_done) + len(b.engine.steps_done) == 2, limit_s=30, what="both running")
    redis.stop()
    await asyncio.sleep(3.5)  # more than twice the timeout without Redis: nobody could hear anybody
    redis.start()
    await asyncio.wait_for(asyncio.gather(*follows), 30)
    assert all(isinstance(o.last, Finished) for o in outcomes)
    assert sorted(a.engine.ran + b.engine.ran) == ["h0", "h1"]  # each ran once: no worker was taken for dead
    await a.shut()
    await b.shut()
    await pool.close()


async def test_queued_jobs_get_an_eta_from_the_workers_speed(redis: RedisServer, pool: RemotePool) -> None:
    a = await start_worker(redis.url, "a", {"alpha": None}, step_seconds=0.02, joins=pool)
    await run_all([await pool.submit(job("000030", "warm", steps=5))])  # the bot times the worker once
    outcomes = await run_all([await pool.submit(job(f"00003{n}", f"e{n}", steps=5, cfg_scale=n + 1.0)) for n in (1, 2)])
    etas = [e.eta_seconds for e in outcomes[1].events if isinstance(e, Queued)]
    assert etas and etas[0] is not None and 0 < etas[0] < 5
    await a.shut()


async def test_progress_and_previews_come_back_at_the_in_process_rates(redis: RedisServer, pool: RemotePool) -> None:
    a = await start_worker(redis.url, "a", {"alpha": None}, step_seconds=0.05, preview_interval=0.4, joins=pool)
    [outcome] = await run_all([await pool.submit(job("000041", "watched", steps=30))])
    progress = [e for e in outcome.events if isinstance(e, Progress)]
    previews = [e.preview for e in progress if e.preview is not None]
    assert previews and all(p.startswith(b"\xff\xd8") for p in previews)  # JPEG, checked by the bot on arrival
    assert len(previews) <= 1.5 / 0.4 + 1  # about 1.5 s of steps: one preview per 0.4 s at most
    assert len(progress) < 30  # plain progress at most every 0.5 s, not every step
    assert progress[-1].step <= 30
    await a.shut()


def test_eta_gives_each_job_to_the_worker_that_finishes_it_first() -> None:
    # A fast worker (1 s per unit) busy for 2 s and a slow idle one (4 s per unit): a 1-unit job is done sooner
    # on the fast one (3 s) than on the slow one (4 s); the next goes to the slow one (4 s).
    assert finish_times_on([2.0, 0.0], [1.0, 4.0], [1.0, 1.0]) == [3.0, 4.0]


def test_the_log_line_hides_the_password() -> None:
    assert safe_url("rediss://easel-bot:s3cret@host:6380/0") == "rediss://easel-bot:***@host:6380/0"
    assert safe_url("redis://:s3cret@host") == "redis://***@host"
    assert safe_url("redis://host:6379") == "redis://host:6379"


def test_job_streams_are_per_worker_run() -> None:
    assert jobs_key("gpu-box", "0123abcd") == "easel:jobs:gpu-box:0123abcd"


ACL_FILE = Path(__file__).resolve().parents[2] / "deploy" / "users.acl"


async def test_the_documented_acl_lets_a_worker_read_jobs_and_write_results_only(tmp_path: Path) -> None:
    from redis.exceptions import NoPermissionError

    acl = ACL_FILE.read_text().replace("BOT_PASSWORD", "bot-secret").replace("WORKER_PASSWORD", "worker-secret")
    # The README's stricter variant: a user of its own per worker, limited to that worker's job streams.
    worker_line = next(line for line in acl.splitlines() if line.startswith("user easel-worker "))
    acl += worker_line.replace("easel-worker ", "easel-worker-a ").replace("~easel:jobs:*", "~easel:jobs:a:*") + "\n"
    server = RedisServer(tmp_path / "acl", acl=acl)
    server.start()
    try:
        pool = await started_pool(server.url_for("easel-bot", "bot-secret"))
        a = await start_worker(server.url_for("easel-worker", "worker-secret"), "a", {"alpha": None}, joins=pool)
        outcomes = await run_all([await pool.submit(job(f"00aa{n}0", f"acl{n}")) for n in range(2)])
        assert all(isinstance(o.last, Finished) for o in outcomes)
        worker = connect(server.url_for("easel-worker", "worker-secret"))
        for forbidden in (
            worker.xadd(a.worker.key, {"kind": b"job"}),  # hand itself (or others) jobs
            worker.xrange(RESULTS),  # read other jobs' results
            worker.hget("easel:running", "x"),
            worker.set("easel:jobs:x", "y"),
            worker.xadd("elsewhere", {"a": b"b"}),
        ):
            with pytest.raises(NoPermissionError):
                await forbidden
        await worker.aclose()
        own = connect(server.url_for("easel-worker-a", "worker-secret"))
        await own.xgroup_create("easel:jobs:a:0123abcd", "worker", id="0", mkstream=True)
        with pytest.raises(NoPermissionError):
            await own.xreadgroup("worker", "x", {"easel:jobs:b:0123abcd": ">"})  # another worker's jobs
        await own.aclose()
        with pytest.raises(Exception, match=r"(?i)auth"):
            await connect(server.url).ping()  # no anonymous access at all
        await a.shut()
        await pool.close()
    finally:
        server.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed here (it makes the certificate)")
async def test_a_rediss_url_speaks_tls_and_checks_the_server_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "tls")
    server = RedisServer(tmp_path / "tls-redis", tls=(cert, key))
    server.start()
    try:
        url = f"{server.url}?ssl_ca_certs={cert}"
        pool = await started_pool(url)
        a = await start_worker(url, "a", {"alpha": None}, joins=pool)
        [outcome] = await run_all([await pool.submit(job("00007a", "over tls"))])
        assert isinstance(outcome.last, Finished)
        with pytest.raises(Exception, match=r"(?i)certificate"):
            await connect(server.url).ping()  # without the CA the server's certificate is refused
        await a.shut()
        await pool.close()
    finally:
        server.stop()


async def test_a_job_failing_on_a_worker_in_a_way_easel_did_not_foresee_fails_alone_and_the_worker_goes_on(
    redis: RedisServer, pool: RemotePool
) -> None:
    def planner(params: GenerationParams) -> GenerationPlan:
        if params.prompt == "poison":
            raise KeyError("a sampler this worker does not know")  # a bug, not one of Easel's errors
        return make_plan(params)

    a = await start_worker(redis.url, "a", {"alpha": None}, planner=planner, joins=pool)
    outcomes = await run_all([await pool.submit(job("0000f1", "poison")), await pool.submit(job("0000f2", "fine"))])
    failed = outcomes[0].last
    assert isinstance(failed, Failed) and "could not plan this job (KeyError" in str(failed.error)
    assert isinstance(outcomes[1].last, Finished)
    later = await run_all([await pool.submit(job("0000f3", "later"))])
    assert isinstance(later[0].last, Finished) and a.engine.ran == ["fine", "later"]
    await a.shut()


async def test_a_job_this_workers_version_cannot_read_fails_with_why_and_the_worker_goes_on(
    redis: RedisServer, pool: RemotePool
) -> None:
    a = await start_worker(redis.url, "a", {"alpha": None}, joins=pool)
    r = connect(redis.url)
    newer = job("0000e1", "x")
    # A newer bot's sampler, sent straight to this worker.
    await r.xadd(a.worker.key, encode_job(Job("0000e1", "1", newer.params.replace(sampler="Euler z")), None))
    reply = await r.xread({RESULTS: "0"}, block=5000)
    fields = {k.decode(): v for k, v in reply[0][1][0][1].items()}
    assert fields["kind"] == b"failed" and b"Unknown sampler 'Euler z'" in fields["body"]
    after = await run_all([await pool.submit(job("0000e2", "after"))])
    assert isinstance(after[0].last, Finished) and a.engine.ran == ["after"]
    await r.aclose()
    await a.shut()


async def test_two_workers_sharing_a_name_lose_no_job_when_the_one_holding_it_dies(
    redis: RedisServer, pool: RemotePool
) -> None:
    first = await start_worker(redis.url, "box", {"alpha": None}, step_seconds=0.02, joins=pool)
    second = await start_worker(redis.url, "box", {"alpha": None}, step_seconds=0.05, joins=pool)
    # The later run holds the name; the earlier one is shut out while it lives.
    outcomes = [await following(pool, job(f"0000c{n}", f"shared {n}", user=str(n + 1), steps=20)) for n in range(4)]
    await second.started()
    await second.die()
    await asyncio.wait_for(asyncio.gather(*(follow for _, follow in outcomes)), 30)
    for outcome, _ in outcomes:
        assert [type(e) for e in outcome.events].count(Finished) == 1
    assert set(first.engine.ran) | set(second.engine.ran) == {f"shared {n}" for n in range(4)}
    assert first.engine.ran  # the survivor took the name, and the work
    await first.shut()


def test_workers_started_without_a_name_on_one_host_get_different_names() -> None:
    from engine.remote.worker import default_worker_name

    assert default_worker_name("gpu box", 4242) == "gpu-box-4242"
    assert default_worker_name("vm", 1) != default_worker_name("vm", 2)
