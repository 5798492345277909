"""Pause/resume (between steps, at a gate, deadlines running or frozen) and drift
re-approval before a phase gate. Time-skipping scenarios; histories saved and replayed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from runbook.drift import NOW_AT_DESIRED
from runbook.messages import UPDATE_PAUSE, UPDATE_RESUME
from runbook.status import RunState
from tests.workflow.doubles import FakeCloud
from workflows import search_attributes as sa
from tests.workflow.harness import (
    FAST_SOAK,
    GATES,
    approve,
    approve_when_pending,
    at_gate,
    finished,
    keep_history,
    new_queue,
    start,
    status,
    until,
    worker_for,
)

HC = "staging-backend-health-check"


async def pause(handle, by: str = "dave", reason: str = "DBA investigating"):
    return await handle.execute_update(UPDATE_PAUSE, {"by": by, "reason": reason})


async def resume(handle, by: str = "dave", reason: str = "go on"):
    return await handle.execute_update(UPDATE_RESUME, {"by": by, "reason": reason})


async def test_pause_mid_phase_finishes_the_step_then_holds_and_at_a_gate(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.hold["deploy-incident-env"] = asyncio.Event()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await approve_when_pending(env, handle, "phase-1")
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await resume(handle)
        assert "not paused; nothing to resume" in str(info.value.cause)
        await asyncio.wait_for(cloud.holding["deploy-incident-env"].wait(), 30)
        await pause(handle)
        st = await status(handle)
        # The step in flight is never interrupted: the run says it is pausing after it.
        assert st.pause.by == "dave" and st.pause.held_at is None and st.state == RunState.RUNNING
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await pause(handle, by="erin")
        assert "already paused by dave" in str(info.value.cause)
        cloud.hold["deploy-incident-env"].set()
        st = await until(env, handle, lambda s: s.state == RunState.PAUSED, skip_s=0)
        assert st.pause.held_before == "step route-traffic"
        attrs = (await handle.describe()).typed_search_attributes
        assert attrs.get(sa.STATE) == "PAUSED"  # the UI's list and filters see it too
        await env.sleep(timedelta(hours=1))  # the budget keeps running (default)
        st = await status(handle)
        assert "route-traffic" not in cloud.step_calls("route_traffic_to_latest")
        assert st.phases[0].budget_breached
        await resume(handle)
        # At a gate: paused at once, approvals still taken, then it holds before the step.
        await until(env, handle, at_gate("phase-2"))
        await pause(handle, reason="change freeze check")
        st = await status(handle)
        assert st.state == RunState.PAUSED and st.pause.held_before.startswith("gate phase-2")
        await approve(handle, "phase-2")
        st = await until(env, handle, lambda s: s.pause and s.pause.held_before
                         == "step configure-backend")
        assert st.state == RunState.PAUSED and "configure-backend" not in cloud.step_calls(
            "deploy_revision")
        await resume(handle, reason="freeze check done")
        for gate in GATES[2:]:
            await approve_when_pending(env, handle, gate)
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.SUCCEEDED and st.pause is None
    assert [(p.by, p.resumed_by) for p in report.pauses] == [("dave", "dave"), ("dave", "dave")]
    await keep_history(handle, "pause_resume")


async def test_frozen_deadlines_move_on_by_the_time_held(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK, "pause": {"freeze_deadlines": True}}, tq)
        st = await until(env, handle, at_gate("phase-1"))
        timeout_at = st.pending_gate.timeout_at
        await pause(handle)
        await env.sleep(timedelta(hours=3))  # past the 2 h gate timeout: frozen, it waits
        st = await status(handle)
        assert st.state == RunState.PAUSED and st.pending_gate.status == "OPEN"
        await resume(handle)
        st = await status(handle)
        held = st.pauses[0].resumed_at - st.pauses[0].held_at
        assert held >= timedelta(hours=3) and st.pending_gate.timeout_at == timeout_at + held
        # Terminated at the gate: nothing in flight (a terminated activity would hold the
        # time-skipping server's clock for the rest of the session).
        await handle.terminate("done")


async def test_drift_before_phase_2_rebuilds_the_plan_and_refuses_the_old_digest(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        st = await until(env, handle, at_gate("phase-1"))
        old = st.plan.digest
        await approve(handle, "phase-1", plan_digest=old)
        # Someone edits a phase-2 target by hand while phase 1 runs, and sets another one
        # to what the runbook would have: that step's change becomes unnecessary.
        cloud.world[f"healthcheck/{HC}"]["check_interval_s"] = 17
        cloud.world["backendservice/staging-auth-service"]["timeout_s"] = 600
        st = await until(env, handle, at_gate("phase-2"))
        gate = st.pending_gate
        assert sorted((d.resource, d.field, d.planned_from, d.now) for d in gate.drift) == [
            ("staging-auth-service", "timeoutSec", 30, NOW_AT_DESIRED),
            (HC, "checkIntervalSec", 5, 17)]
        # The rebuilt plan no longer changes the auth backend's timeout.
        assert not [c for c in st.plan.changes if c.step_id == "backend-timeout-staging-auth-service"]
        assert st.plan.rebuilt_from == old and st.plan.digest != old
        for extra in ({"plan_digest": old}, {}):
            with pytest.raises(WorkflowUpdateFailedError) as info:
                await approve(handle, "phase-2", **extra)
            assert "digest" in str(info.value.cause)
        await approve(handle, "phase-2", plan_digest=st.plan.digest)
        for g in GATES[2:]:
            await approve_when_pending(env, handle, g)
        report = await finished(handle)
    assert report.outcome == RunState.SUCCEEDED and report.plan_digest == st.plan.digest
    assert cloud.world[f"healthcheck/{HC}"]["check_interval_s"] == 30
    await keep_history(handle, "drift_reapproval")


async def test_no_drift_keeps_the_plan_and_its_digest(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        st = await until(env, handle, at_gate("phase-1"))
        old = st.plan.digest
        await approve(handle, "phase-1", plan_digest=old)
        st = await until(env, handle, at_gate("phase-2"))
        assert st.plan.digest == old and st.pending_gate.drift == []
        await approve(handle, "phase-2", plan_digest=old)
        await until(env, handle, at_gate("phase-3"))
        await handle.terminate("done")  # at a gate: nothing in flight
