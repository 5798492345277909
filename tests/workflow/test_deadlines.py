"""Durable deadlines: gate reminders and escalations, gate timeout, phase budgets."""

from __future__ import annotations

from datetime import timedelta

from runbook import activity_names as act
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

PHASE_1_REVERSIBLE_UNDO = ["route-traffic", "deploy-incident-env", "vpc-access-auth", "expand-sql"]


async def test_gate_reminder_escalation_then_timeout_rolls_back(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await approve_when_pending(env, handle, "phase-1")
        # Nobody answers the phase-2 gate: time skips through its deadlines.
        report = await finished(handle)
        st = await status(handle)

    assert report.outcome == RunState.TIMED_OUT
    assert "phase-2 timed out" in report.reason
    gate = next(g for g in st.gates if g.id == "phase-2")
    assert gate.status == "TIMED_OUT"
    assert gate.timeout_at - gate.opened_at == timedelta(hours=2)
    assert timedelta(0) <= gate.closed_at - gate.timeout_at < timedelta(seconds=1)
    sent = [(e.level, e.recipient, e.gate) for e in report.escalations if e.gate == "phase-2"]
    # identity-1: the gate's opening is announced first (with what it will change).
    assert sent == [("approval", "Development Team Lead", "phase-2"),
                    ("reminder", "Development Team Lead", "phase-2"),
                    ("escalation", "Engineering Manager", "phase-2"),
                    ("breach", "Engineering Manager", "phase-2")]
    at = {e.level: e.at for e in report.escalations if e.gate == "phase-2"}
    assert timedelta(0) <= at["reminder"] - gate.remind_at < timedelta(seconds=1)
    assert timedelta(0) <= at["escalation"] - gate.escalate_at < timedelta(seconds=1)
    assert gate.escalate_at - gate.opened_at == timedelta(minutes=30)
    # Phase 1's reversible steps undone in reverse order; the connector left in place.
    assert cloud.compensations() == PHASE_1_REVERSIBLE_UNDO
    assert [c.step_id for c in report.changes_left_in_place] == ["scale-connector"]
    assert sorted(c.step_id for c in report.changes_reverted) == sorted(PHASE_1_REVERSIBLE_UNDO)
    world = default_world()
    for key in ("sql/netra-staging-db", "service/netra-backend-staging", "service/auth-staging"):
        assert cloud.world[key] == world[key]
    assert cloud.world["connector/staging-connector"]["max_instances"] == 10
    steps = {s.id: s.status for s in st.steps}
    assert steps["scale-connector"] == StepStatus.LEFT_IN_PLACE
    assert steps["expand-sql"] == StepStatus.COMPENSATED
    assert [(e.step_id, e.action) for e in st.rollback_log] == [
        ("route-traffic", "compensated"),
        ("deploy-incident-env", "compensated"), ("vpc-access-auth", "compensated"),
        ("expand-sql", "compensated"), ("scale-connector", "left_in_place")]
    await keep_history(handle, "gate_timeout")


async def test_phase_budget_breach_escalates_and_run_still_succeeds(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    # Phase 4's soak is longer than its budget but shorter than the hard limit.
    request = {"soak": {"window_s": 600, "sample_every_s": 60},
               "budgets": {"phase_4_s": 300, "hard_limit_factor": 4.0}}
    async with worker_for(env, cloud, tq):
        handle = await start(env, request, tq)
        for gate in ("phase-1", "phase-2", "phase-3", "phase-4"):
            await approve_when_pending(env, handle, gate, skip_s=20)
        await approve_when_pending(env, handle, "cleanup-revisions", skip_s=20)
        report = await finished(handle)

    assert report.outcome == RunState.SUCCEEDED
    p4 = report.phases[3]
    assert p4.budget_breached and p4.duration_s > 300
    assert not any(p.budget_breached for p in report.phases[:3])
    breaches = [(e.level, e.recipient) for e in report.escalations if e.phase == 4]
    # The page about the breached budget is resolved once the phase succeeded.
    assert breaches == [("approval", "QA Team Lead"), ("breach", "QA Team Lead"),
                        ("resolve", "QA Team Lead")]
    assert cloud.compensations() == []


async def test_phase_hard_limit_rolls_back_every_phase(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    # 503s never stop: the soak window keeps restarting until the hard limit.
    cloud.soak_503s = [3] * 1000
    request = {"soak": {"window_s": 600, "sample_every_s": 60},
               "budgets": {"phase_4_s": 300, "hard_limit_factor": 2.0}}
    async with worker_for(env, cloud, tq):
        handle = await start(env, request, tq)
        for gate in ("phase-1", "phase-2", "phase-3", "phase-4"):
            await approve_when_pending(env, handle, gate, skip_s=20)
        report = await finished(handle)
        st = await status(handle)

    assert report.outcome == RunState.ROLLED_BACK
    assert "exceeded its hard limit of 600s" in report.reason
    p4 = st.phases[3]
    assert p4.status == "FAILED" and p4.budget_breached and p4.soak_restarts >= 5
    levels = [(e.level, e.recipient) for e in report.escalations if e.phase == 4]
    assert levels == [("approval", "QA Team Lead"), ("breach", "QA Team Lead"),
                      ("escalation", "Head of Quality"),
                      ("hard_limit", "Head of Quality")]
    # Reverse order across phases 3, 2, 1.
    undo = cloud.compensations()
    assert undo[0] == "ensure-certificate"
    assert undo[1:6] == ["alert-5", "alert-4", "alert-3", "alert-2", "alert-1"]
    assert undo[6:10] == ["backend-timeout-staging-auth-service", "backend-timeout-staging-backend-service",
                          "health-check-staging-auth-health-check",
                          "health-check-staging-backend-health-check"]
    assert undo[10:] == ["configure-backend"] + PHASE_1_REVERSIBLE_UNDO
    assert cloud.restored_except_connector()
    assert all(v == {} for k, v in cloud.world.items() if k.startswith("alert/"))
    assert cloud.step_calls(act.DELETE_OLD_REVISIONS) == []
    await keep_history(handle, "hard_limit")
