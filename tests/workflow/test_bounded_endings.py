"""A rollback or a cleanup that hangs ends at a documented, bounded time, says what it
waits on, escalates, and a cleanup yields to an abort (issue 10, fault-matrix findings)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.exceptions import ApplicationError

from runbook.status import RunState, StepStatus
from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import (
    FAST_SOAK,
    GATES,
    approve_when_pending,
    finished,
    keep_history,
    new_queue,
    start,
    status,
    worker_for,
)
from workflows.saga import UNDO_DEADLINE, UNDO_SLOW_AFTER


def _unavailable() -> ApplicationError:
    # A restore whose operation keeps failing; each retry comes 4 minutes later.
    return ApplicationError("503 backend unavailable", type="Unavailable",
                            next_retry_delay=timedelta(minutes=4))


async def test_a_hung_undo_is_logged_escalated_and_given_up_at_its_deadline(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["undo-expand-sql"] = [_unavailable for _ in range(20)]
    cloud.failures["verify-infrastructure"] = [
        ApplicationError("connector at 95%", type="StepFailed", non_retryable=True)]
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await approve_when_pending(env, handle, "phase-1")
        report = await finished(handle)
        st = await status(handle)
    # The other undos were not held hostage: the pass went on after the deadline.
    assert report.outcome == RunState.FAILED and "rollback incomplete" in report.reason
    sql = next(s for s in st.steps if s.id == "expand-sql")
    assert sql.status == StepStatus.COMPENSATION_FAILED
    log = {(e.step_id, e.action): e for e in st.rollback_log}
    waiting = log[("expand-sql", "waiting")]
    assert "restore_sql" in waiting.detail and "gives up at" in waiting.detail
    failed = log[("expand-sql", "compensation_failed")]
    assert f"gave up after {UNDO_DEADLINE}" in failed.detail
    assert (failed.at - waiting.at) <= UNDO_DEADLINE - UNDO_SLOW_AFTER + timedelta(minutes=1)
    stuck = [e for e in st.escalations if "rollback stuck on expand-sql" in e.subject]
    assert stuck and stuck[0].level == "escalation"
    assert any(n.subject.endswith("rollback stuck on expand-sql") for n in cloud.notifications)
    assert ("deploy-incident-env", "compensated") in log  # later undos still ran
    await keep_history(handle, "undo_deadline")


async def _stopped_during_cleanup(env, stop):
    """A run whose cleanup step hangs (held by the double) until ``stop(handle)``."""
    cloud, tq = FakeCloud(), new_queue()
    cloud.hold["delete-old-revisions"] = asyncio.Event()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        for gate in GATES:
            await approve_when_pending(env, handle, gate)
        await cloud.holding["delete-old-revisions"].wait()
        await stop(handle)
        return handle, await finished(handle), await status(handle)


async def test_abort_during_a_hung_cleanup_stops_it(time_skipping_env):
    handle, report, st = await _stopped_during_cleanup(time_skipping_env, lambda h: h.signal(
        "abort", {"by": "alice", "reason": "cleanup hangs"}))
    assert report.outcome == RunState.ABORTED and "alice" in report.reason
    cleanup = next(s for s in st.steps if s.id == "delete-old-revisions")
    assert cleanup.status in (StepStatus.FAILED, StepStatus.LEFT_IN_PLACE)
    await keep_history(handle, "abort_in_cleanup")


async def test_a_step_cancelled_between_retries_does_not_claim_one_attempt(time_skipping_env):
    """The hard limit cancels expand-sql while it waits for its next retry: the workflow
    cannot know how many attempts ran, so the status says unknown (0), never 1."""
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["expand-sql"] = [
        lambda: ApplicationError("409 operationInProgress", type="Conflict",
                                 next_retry_delay=timedelta(minutes=4)) for _ in range(10)]
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK,
                                   "budgets": {"phase_1_s": 300, "hard_limit_factor": 2.0}}, tq)
        await approve_when_pending(env, handle, "phase-1")
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.ROLLED_BACK and "hard limit" in report.reason
    sql = next(s for s in st.steps if s.id == "expand-sql")
    assert len(cloud.step_calls("expand_sql")) >= 2  # it was retried
    assert sql.attempts == 0 and "Cancel" in sql.error


async def test_a_temporal_cancel_during_cleanup_stops_it_before_the_rollback(time_skipping_env):
    _, report, st = await _stopped_during_cleanup(time_skipping_env, lambda h: h.cancel())
    assert report.outcome == RunState.ABORTED
    cleanup = next(s for s in st.steps if s.id == "delete-old-revisions")
    # Stopped (and waited for) before the undos ran: never still running beside them.
    assert cleanup.status != StepStatus.RUNNING and cleanup.finished_at is not None
    undo_at = min(e.at for e in st.rollback_log)
    assert cleanup.finished_at <= undo_at
