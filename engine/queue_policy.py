"""Pure queue policy for the GPU executor: fair order between users, model affinity per worker, run-time estimates
and queue ETAs. No threads and no clocks here: the executor passes in what it knows (a job's cost is its plan's).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass

from engine.jobs import Job

# A free worker looks this far into the fair order for a job whose model it already holds...
AFFINITY_WINDOW = 4
# ...but a job passed over this many times for another's model runs next, whatever is loaded.
MAX_PASSES = 3
# Weight of the newest run in the moving estimate of seconds per unit of work.
ESTIMATE_WEIGHT = 0.3


def fair_order(pending: list[tuple[str, int]], last_served: dict[str, int]) -> list[int]:
    """Order of pending jobs (user, submission seq) under round-robin between users.

    The next job belongs to the user served least recently (never served first), oldest job first; so one user
    with ten jobs cannot starve another with one. Returns the seqs in run order.

    Serving a user makes them the most recently served, so after the first pick the users simply take turns in
    the order of their first pick: round r holds each user's r-th oldest job, users ordered by (last served, oldest
    job). O(n log n), since the executor orders its whole queue at every submit.
    """
    jobs: dict[str, list[int]] = {}
    for user, seq in sorted(pending, key=lambda p: p[1]):
        jobs.setdefault(user, []).append(seq)
    users = sorted(jobs, key=lambda u: (last_served.get(u, -1), jobs[u][0]))
    order: list[int] = []
    for turn in range(max((len(seqs) for seqs in jobs.values()), default=0)):
        order.extend(jobs[user][turn] for user in users if turn < len(jobs[user]))
    return order


def pick_job(
    order: Sequence[int],
    model_of: Mapping[int, str],
    loaded: Collection[str],
    passed_over: Mapping[int, int],
    *,
    window: int = AFFINITY_WINDOW,
    max_passes: int = MAX_PASSES,
) -> int:
    """The job a free worker holding the `loaded` models takes next, from the fair `order` (seqs, non-empty).

    Fairness first: only the first `window` jobs are considered, in fair order. Among them the first whose model
    is already loaded wins, so a worker switches models less often; but a job that has already been passed over
    `max_passes` times stops the search, so no job waits for ever behind other models' jobs. With nothing loaded
    that fits, the head of the fair order runs. The caller counts a pass for every job ahead of the one picked.
    """
    for seq in order[:window]:
        if passed_over.get(seq, 0) >= max_passes or model_of[seq] in loaded:
            return seq
    return order[0]


def pick_batch(
    order: Sequence[int],
    head: int,
    key_of: Mapping[int, Hashable | None],
    images_of: Mapping[int, int],
    max_images: int,
    *,
    window: int = AFFINITY_WINDOW,
) -> list[int]:
    """The head job and the waiting jobs that may share its batch: only from the first `window` of the fair order
    (so no job gets further ahead than the batch it joins, and none waits for jobs that have not arrived), only with
    an equal batch key, and only while the batch's images fit in `max_images`. The head always runs."""
    batch, total, key = [head], images_of[head], key_of[head]
    if key is None or max_images <= 1:
        return batch
    for seq in order[:window]:
        if seq != head and key_of[seq] == key and total + images_of[seq] <= max_images:
            batch.append(seq)
            total += images_of[seq]
    return batch


class RunTimes:
    """A moving estimate of seconds per unit of cost (`GenerationPlan.cost`), per model and over all models (for a
    new model)."""

    def __init__(self, weight: float = ESTIMATE_WEIGHT) -> None:
        self.weight = weight
        self._per_model: dict[str, float] = {}
        self._overall: float | None = None

    def record(self, model: str, cost: float, seconds: float) -> None:
        rate = seconds / max(cost, 1e-9)
        self._per_model[model] = self._blend(self._per_model.get(model), rate)
        self._overall = self._blend(self._overall, rate)

    def estimate(self, model: str, cost: float) -> float | None:
        """Expected seconds for a job of `cost` on `model`; None while no job has finished at all."""
        rate = self._per_model.get(model, self._overall)
        return None if rate is None else rate * cost

    def rate(self) -> float | None:
        """Seconds per unit of cost over all models; None while no job has finished."""
        return self._overall

    def _blend(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.weight * (new - old)


def finish_times(running_left: Sequence[float], workers: int, waiting: Sequence[float]) -> list[float]:
    """Seconds from now until each waiting job (in run order, by expected duration) is done.

    `running_left`: seconds each busy worker still needs; the other workers are free now. Each waiting job goes
    to the worker that is free first, as the executor would hand it out.
    """
    free = [max(left, 0.0) for left in running_left] + [0.0] * max(workers - len(running_left), 0)
    heapq.heapify(free)
    done: list[float] = []
    for seconds in waiting:
        finished = heapq.heappop(free) + seconds
        done.append(finished)
        heapq.heappush(free, finished)
    return done


def finish_times_on(free_in: Sequence[float], rates: Sequence[float], waiting: Sequence[float]) -> list[float]:
    """Seconds from now until each waiting job (in run order, by cost) is done, on workers of different speeds.

    `free_in`: seconds until each worker is free; `rates`: its seconds per unit of cost. Each job goes to the
    worker that would finish it first (a fast busy worker may beat a slow idle one), as a scheduler that knows
    the speeds would hand it out.
    """
    free = [max(f, 0.0) for f in free_in]
    done: list[float] = []
    for cost in waiting:
        best = min(range(len(free)), key=lambda w: free[w] + cost * rates[w])
        free[best] += cost * rates[best]
        done.append(free[best])
    return done


def admission_problem(
    job: Job, queued: Collection[Job], max_per_user: int, max_total: int, first_free: Callable[[], float | None]
) -> str | None:
    """Why `job` may not join the `queued` ones (waiting or running), or None: already there, the user's share
    (the lower of `max_per_user` and the job's own cap, a server's or channel's) or the whole queue is full.
    `first_free` says in how many seconds the user's first job should be done (asked only at the cap)."""
    if any(other.job_id == job.job_id for other in queued):
        return "That job is already queued."
    mine = sum(1 for other in queued if other.user_id == job.user_id)
    cap = min(max_per_user, job.max_queued or max_per_user)
    if mine >= cap:
        return f"You already have {mine} job(s) waiting or running (the limit here is {cap}); " + _slot_frees(
            first_free()
        )
    if len(queued) >= max_total:
        return f"The queue is full ({max_total} jobs); try again when it is shorter."
    return None


def _slot_frees(seconds: float | None) -> str:
    """When a queue slot frees, for the refusal's message."""
    if seconds is None:
        return "a slot frees when one of them finishes."
    return f"a slot frees when one of them finishes, in about {max(1, round(seconds))} s."


@dataclass(frozen=True)
class CostLimits:
    """Ceilings on work, in the plan's units (one model call at 512x512 with CFG): per job, and per user for all
    their jobs waiting or running together. None: no ceiling."""

    per_job: float | None = None
    per_user: float | None = None


NO_COST_LIMITS = CostLimits()


def job_cost_problem(cost: float, limits: CostLimits) -> str | None:
    """Why one job is too much work to queue at all, with what to lower; None when it is not."""
    if limits.per_job is None or cost <= limits.per_job:
        return None
    return (
        f"This job is {cost:,.0f} units of work (a unit: one 512x512 step with CFG); this bot takes at most "
        f"{limits.per_job:,.0f} per job. Lower the steps, the size, the hires upscale, the batch size or the "
        "`AND` parts."
    )


def user_cost_problem(cost: float, others: float, limits: CostLimits) -> str | None:
    """Why a job must wait for the user's other jobs (`others`: their work waiting or running); None when not."""
    if limits.per_user is None or others == 0 or cost + others <= limits.per_user:
        return None
    return (
        f"Your jobs waiting or running are {others:,.0f} units of work and this one is {cost:,.0f}; together at most "
        f"{limits.per_user:,.0f} may wait here. Try again when one of them finishes."
    )
