"""Two worker processes on one task queue, as replicas of a Deployment run: the one
running a mutating step is SIGKILLed mid-step and not restarted. The other takes the step
over once the step's heartbeat timeout (10 s) expires, the run finishes as a run without
faults does, and no change is applied twice.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType

from tests.chaos.conftest import chaos_harness
from tests.chaos.driver import Chaos, Kill
from tests.chaos.expectations import (
    assert_attempt_was_cut,
    assert_no_change_applied_twice,
    assert_succeeded_like_a_clean_run,
)
from tests.chaos.kill_points import Point, predicate
from tests.chaos.processes import WorkerPool, WorkerProcess

pytestmark = pytest.mark.chaos

REQUEST = {"soak": {"window_s": 6, "sample_every_s": 3}, "on_step_failure": "rollback"}
# A long-running Cloud SQL tier change (5 s at SIM_SPEED): easily caught in flight.
STEP = Point("expand-sql", "in_flight")


@pytest_asyncio.fixture
async def two_workers(chaos_server, tmp_path, request):
    task_queue = f"chaos-two-{uuid.uuid4().hex[:8]}"
    async with chaos_harness(chaos_server, tmp_path, request, lambda sim: WorkerPool(
            [WorkerProcess(tmp_path, chaos_server, sim, task_queue, name=name)
             for name in ("worker-a", "worker-b")])) as harness:
        yield harness


async def started_attempt(chaos: Chaos, activity_id: str):
    """The ActivityTaskStarted event of the step's last scheduled activity: the server
    records it once, for the attempt that ended it, with that attempt's worker identity."""
    events = (await chaos.handle.fetch_history()).events
    scheduled = [e.event_id for e in events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                 and e.activity_task_scheduled_event_attributes.activity_id == activity_id]
    assert scheduled, f"{activity_id} never scheduled"
    started = [e.activity_task_started_event_attributes for e in events
               if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
               and e.activity_task_started_event_attributes.scheduled_event_id == scheduled[-1]]
    assert len(started) == 1, started
    return started[0]


async def test_a_worker_killed_mid_step_leaves_the_run_to_the_other(two_workers):
    chaos, pool = two_workers, two_workers.worker
    await chaos.start(REQUEST)
    a, b = pool.workers
    assert a.identity != b.identity

    in_flight = predicate(chaos, STEP)

    async def step_running_on_a_known_worker():
        if not await in_flight():
            return None
        return [p for p in await chaos.pending_activities()
                if p.activity_id == STEP.activity_id and p.last_worker_identity]
    [attempt] = await chaos.wait_for(step_running_on_a_known_worker, STEP.name)
    victim = pool.with_identity(attempt.last_worker_identity)
    survivor = b if victim is a else a
    await asyncio.to_thread(victim.kill)
    chaos.kills.append(Kill(f"{victim.name}: {STEP.name}", attempt))

    report, st = await chaos.finish()

    assert_succeeded_like_a_clean_run(report, st)
    assert_attempt_was_cut(st, [STEP.step_id])
    await assert_no_change_applied_twice(chaos)
    finished_by = await started_attempt(chaos, STEP.activity_id)
    assert finished_by.identity == survivor.identity, (finished_by, victim.identity)
    assert finished_by.attempt > attempt.attempt
    assert survivor.alive() and not victim.alive()
