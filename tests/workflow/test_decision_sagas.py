"""Decisions and the saga: after retry or skip every change is undone exactly once, with
the state the FIRST attempt found, in the original order; a cancel is never decided on;
a frozen pause moves a phase's deadlines only by the time the phase existed."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from runbook.activity_io import MutationCheckpoint, StepOutcome
from runbook.messages import UPDATE_DECIDE, UPDATE_PAUSE, UPDATE_RESUME
from runbook.status import RunState
from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import (FAST_SOAK, GATES, approve, approve_when_pending, at_gate,
                                    finished, new_queue, reject, start, status, until, worker_for)


@dataclass
class PartialCloud(FakeCloud):
    # step id -> extra checkpoint fields: the attempt issues its change, then fails
    fail_after: dict[str, dict] = field(default_factory=dict)

    async def _mutate(self, key: str, desired: dict[str, Any]) -> StepOutcome:
        sid = activity.info().activity_id
        out = await super()._mutate(key, desired)
        extra = self.fail_after.pop(sid, None)
        if extra is not None:
            cp = MutationCheckpoint(resource=key, before=out.before, sent=True, **extra)
            raise ApplicationError("operation failed after it was issued",
                                   cp.model_dump(mode="json"), type="OperationFailed",
                                   non_retryable=True)
        return out


async def decide(handle, gate, decision, by="bob", reason="r"):
    return await handle.execute_update(UPDATE_DECIDE, {"gate": gate, "decision": decision,
                                                       "by": by, "reason": reason})


async def test_freeze_overshift_phase_budget(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK, "pause": {"freeze_deadlines": True}}, tq)
        await approve_when_pending(env, handle, "phase-1")
        await until(env, handle, at_gate("phase-2"))
        await handle.execute_update(UPDATE_PAUSE, {"by": "dave", "reason": "x"})
        await env.sleep(timedelta(hours=1))  # held at the gate (frozen) for an hour
        await approve(handle, "phase-2")
        st = await until(env, handle, lambda s: s.pause and s.pause.held_before == "step configure-backend")
        budget_at = st.phases[1].budget_at
        started = st.phases[1].started_at
        await env.sleep(timedelta(seconds=60))
        await handle.execute_update(UPDATE_RESUME, {"by": "dave", "reason": "go"})
        st = await status(handle)
        shift = st.phases[1].budget_at - budget_at
        held_in_phase = st.pauses[0].resumed_at - started
        for g in GATES[2:]:
            await approve_when_pending(env, handle, g)
        await finished(handle)
    assert shift <= held_in_phase + timedelta(seconds=5), (shift, held_in_phase)


async def test_retry_after_in_flight_first_attempt(time_skipping_env):
    env, cloud, tq = time_skipping_env, PartialCloud(), new_queue()
    cloud.fail_after["configure-backend"] = {"operation": "op-1"}  # neither done nor failed
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        for g in GATES[:2]:
            await approve_when_pending(env, handle, g)
        await until(env, handle, at_gate("decide-configure-backend"))
        await decide(handle, "decide-configure-backend", "retry")
        await until(env, handle, at_gate("phase-3"))
        await reject(handle, "phase-3")
        report = await finished(handle)
        st = await status(handle)
    rec = next(s for s in st.steps if s.id == "configure-backend")
    assert rec.error is None and not rec.outcome_unknown
    assert cloud.compensations().count("configure-backend") == 1
    assert cloud.restored_except_connector()
    assert "configure-backend" not in [c.step_id for c in report.changes_outcome_unknown]


async def test_retry_after_partial_first_attempt_then_retry_fails_again(time_skipping_env):
    env, cloud, tq = time_skipping_env, PartialCloud(), new_queue()
    cloud.fail_after["configure-backend"] = {"operation": "op-1", "operation_done": True}
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        for g in GATES[:2]:
            await approve_when_pending(env, handle, g)
        await until(env, handle, at_gate("decide-configure-backend"))
        cloud.failures["configure-backend"] = [ApplicationError("quota", type="FailedPrecondition", non_retryable=True)]
        await decide(handle, "decide-configure-backend", "retry")
        await until(env, handle, at_gate("decide-configure-backend-2"))
        await decide(handle, "decide-configure-backend-2", "rollback")
        await finished(handle)
    assert cloud.compensations().count("configure-backend") == 1
    assert cloud.restored_except_connector()


async def test_skip_alert_that_sent_change_then_rollback(time_skipping_env):
    env, cloud, tq = time_skipping_env, PartialCloud(), new_queue()
    cloud.fail_after["alert-1"] = {"operation": "op-1", "operation_done": True}
    cloud.fail_after["alert-2"] = {"operation": "op-2", "operation_done": True}
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        for g in GATES[:3]:
            await approve_when_pending(env, handle, g)
        await until(env, handle, at_gate("decide-alert-1"))
        await decide(handle, "decide-alert-1", "skip")
        await until(env, handle, at_gate("decide-alert-2"))
        await decide(handle, "decide-alert-2", "retry")
        await until(env, handle, at_gate("phase-4"))
        st = await status(handle)
        assert st.pending_gate.drift == []
        await reject(handle, "phase-4")
        await finished(handle)
    undone = cloud.compensations()
    alerts = [s for s in undone if s.startswith("alert-")]
    assert alerts == sorted(alerts, reverse=True)  # the retried alert-2 kept its place
    assert cloud.compensations().count("alert-1") == 1
    assert cloud.compensations().count("alert-2") == 1
    assert cloud.restored_except_connector()


async def test_temporal_cancel_mid_step_in_asking_phase(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.hold["configure-backend"] = asyncio.Event()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        for g in GATES[:2]:
            await approve_when_pending(env, handle, g)
        await asyncio.wait_for(cloud.holding["configure-backend"].wait(), 30)
        await handle.cancel()
        report = await finished(handle)
        st = await status(handle)
    dec = [g for g in st.gates if g.kind == "decision"]
    assert not dec and report.outcome == RunState.ABORTED
    assert (st.finished_at - st.started_at) < timedelta(minutes=5)  # workflow time: no gate wait


async def test_hard_limit_mid_step_in_asking_phase_rolls_back_without_a_decision(time_skipping_env):
    """The hard limit stops configure-backend after it sent its change: the step reports
    an ordinary activity failure with its checkpoint, which must not open a decision gate
    (the run would wait out the gate's timeout instead of rolling back)."""
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.hold["configure-backend"] = asyncio.Event()
    # A held activity keeps the test server from skipping time: a 5 s hard limit, real time.
    request = {"soak": FAST_SOAK, "budgets": {"phase_2_s": 5, "hard_limit_factor": 1.0}}
    async with worker_for(env, cloud, tq):
        handle = await start(env, request, tq)
        for g in GATES[:2]:
            await approve_when_pending(env, handle, g)
        await asyncio.wait_for(cloud.holding["configure-backend"].wait(), 30)
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.ROLLED_BACK and "hard limit" in report.reason
    assert not any(g.kind == "decision" for g in st.gates)
    assert cloud.compensations().count("configure-backend") == 1
    assert cloud.restored_except_connector()
