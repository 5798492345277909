"""Abort and cancel mid-step, and a worker crash mid-activity."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from runbook import activity_names as act
from runbook.messages import SIGNAL_ABORT
from runbook.status import RunState, StepStatus
from tests.workflow.doubles import FakeCloud, default_world
from tests.workflow.harness import (
    finished,
    FAST_SOAK,
    approve_when_pending,
    keep_history,
    new_queue,
    start,
    status,
    worker_for,
)
from worker import build_worker


async def _stopped_mid_configure_backend(env, cloud: FakeCloud, tq: str, stop) -> tuple:
    """Run to phase 2, hold configure-backend after it issued its change, then ``stop``."""
    cloud.hold["configure-backend"] = asyncio.Event()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await approve_when_pending(env, handle, "phase-1")
        await approve_when_pending(env, handle, "phase-2")
        await asyncio.wait_for(cloud.holding["configure-backend"].wait(), 30)
        await stop(handle)
        report = await finished(handle)
        st = await status(handle)
    return handle, report, st


async def test_abort_signal_mid_step_rolls_back_including_the_interrupted_step(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()

    async def abort(handle):
        await handle.signal(SIGNAL_ABORT, {"by": "frank", "reason": "wrong project"})

    handle, report, st = await _stopped_mid_configure_backend(env, cloud, tq, abort)
    assert report.outcome == RunState.ABORTED
    assert report.reason == "aborted by frank: wrong project"
    step = next(s for s in st.steps if s.id == "configure-backend")
    # Interrupted after issuing its change: recorded from its checkpoint and undone.
    assert step.status == StepStatus.COMPENSATED and step.changed
    assert cloud.compensations() == ["configure-backend", "route-traffic",
                                     "deploy-incident-env", "vpc-access-auth", "expand-sql"]
    assert cloud.restored_except_connector()
    assert st.phases[1].status == "FAILED"
    await keep_history(handle, "abort_mid_step")


async def test_workflow_cancel_mid_step_still_compensates(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()

    async def cancel(handle):
        await handle.cancel()

    handle, report, st = await _stopped_mid_configure_backend(env, cloud, tq, cancel)
    assert report.outcome == RunState.ABORTED
    assert report.reason == "cancelled by workflow cancellation"
    # The step the cancel stopped is not "failed" for a decision: no gate, no wait.
    assert not any(g.kind == "decision" for g in st.gates)
    assert cloud.compensations() == ["configure-backend", "route-traffic",
                                     "deploy-incident-env", "vpc-access-auth", "expand-sql"]
    assert cloud.restored_except_connector()
    assert [c.step_id for c in report.changes_left_in_place] == ["scale-connector"]
    await keep_history(handle, "cancel_mid_step")


async def test_crash_mid_activity_resumes_on_a_new_worker_without_repeating(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.hold["expand-sql"] = asyncio.Event()
    # No sticky cache: a dead process keeps none, and the test server does not fall back
    # from a dead worker's sticky queue the way a real server does.
    first = build_worker(env.client, tq, cloud.activities(), max_cached_workflows=0,
                         graceful_shutdown_timeout=timedelta(0))  # a crash is not graceful
    running = asyncio.create_task(first.run())
    handle = await start(env, {"soak": FAST_SOAK}, tq)
    await approve_when_pending(env, handle, "phase-1")
    await asyncio.wait_for(cloud.holding["expand-sql"].wait(), 30)
    assert cloud.mutations.count("sql/netra-staging-db") == 1
    # The worker dies while expand-sql waits on its operation.
    await first.shutdown()
    await running
    cloud.hold["expand-sql"].set()  # the "operation" completes while no worker runs

    async with worker_for(env, cloud, tq):
        for gate in ("phase-2", "phase-3", "phase-4", "cleanup-revisions"):
            await approve_when_pending(env, handle, gate)
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.SUCCEEDED
    # expand-sql ran twice (the crash, then the resume) but changed the world once, and
    # its record still holds the state the first attempt replaced.
    assert cloud.step_calls(act.EXPAND_SQL) == ["expand-sql", "expand-sql"]
    assert cloud.mutations.count("sql/netra-staging-db") == 1
    sql = next(s for s in st.steps if s.id == "expand-sql")
    assert sql.attempts == 2
    assert sql.before == default_world()["sql/netra-staging-db"]
    assert len(cloud.mutations) == len(set(cloud.mutations)) + 3  # service: 4 changes
    await keep_history(handle, "crash_resume")
