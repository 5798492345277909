"""Approval gates: validator rejections, quorum, signals, rejection."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError

from runbook import activity_names as act
from runbook.messages import SIGNAL_APPROVE
from runbook.status import RunState
from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import (
    finished,
    FAST_SOAK,
    approve,
    approve_when_pending,
    at_gate,
    keep_history,
    new_queue,
    reject,
    start,
    status,
    until,
    worker_for,
)


async def _refused(coro) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await coro
    return str(info.value.cause)


async def test_every_validator_rejection_and_a_quorum_of_two(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    request = {"requested_by": "carol", "soak": FAST_SOAK, "approval": {"gates": {
        "phase-1": {"min_approvals": 2, "approvers": ["alice", "bob", "carol"]}}}}
    async with worker_for(env, cloud, tq):
        handle = await start(env, request, tq)
        st = await until(env, handle, at_gate("phase-1"))
        digest = st.plan.digest

        assert "gate phase-2 is not pending" in await _refused(approve(handle, "phase-2"))
        assert "unknown gate 'phase-9'" in await _refused(approve(handle, "phase-9"))
        assert "mallory is not allowed to approve phase-1" in \
            await _refused(approve(handle, "phase-1", "mallory"))
        assert "carol requested this run and may not approve it (two-person rule)" in \
            await _refused(approve(handle, "phase-1", "carol"))
        assert "does not match the current plan" in \
            await _refused(approve(handle, "phase-1", "alice", plan_digest="0000"))
        assert "approver" in await _refused(approve(handle, "phase-1", ""))

        first = await approve(handle, "phase-1", "alice", plan_digest=digest, comment="looks right")
        assert first.accepted and first.gate_status == "OPEN" and (first.approvals, first.required) == (1, 2)
        assert "alice already approved phase-1" in await _refused(approve(handle, "phase-1", "alice"))
        assert (await status(handle)).pending_gate.id == "phase-1"  # quorum not reached yet

        # Signals that would be rejected are recorded and ignored.
        await handle.signal(SIGNAL_APPROVE, {"gate": "phase-1", "approver": "carol"})
        await handle.signal(SIGNAL_APPROVE, {"gate": "phase-1"})
        st = await until(env, handle, lambda s: len(s.ignored_messages) == 2, skip_s=0)
        assert "two-person rule" in st.ignored_messages[0].reason
        assert "approver" in st.ignored_messages[1].reason
        assert st.pending_gate.id == "phase-1"

        # The second distinct approver, by signal, completes the quorum.
        await handle.signal(SIGNAL_APPROVE, {"gate": "phase-1", "approver": "bob", "comment": "ok"})
        st = await until(env, handle, at_gate("phase-2"))
        gate = next(g for g in st.gates if g.id == "phase-1")
        assert gate.status == "APPROVED"
        assert [(a.approver, a.via, a.comment) for a in gate.approvals] == [
            ("alice", "update", "looks right"), ("bob", "signal", "ok")]
        assert gate.approvals[0].plan_digest == digest
        await handle.cancel()
        await finished(handle)
    await keep_history(handle, "gate_validation")


async def test_reject_at_phase_3_rolls_back_and_ends_rejected(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await approve_when_pending(env, handle, "phase-1")
        await approve_when_pending(env, handle, "phase-2")
        await until(env, handle, at_gate("phase-3"))
        ack = await reject(handle, "phase-3", "erin", "certificate owner unavailable")
        assert ack.gate_status == "REJECTED"
        report = await finished(handle)
    assert report.outcome == RunState.REJECTED
    assert report.reason == "gate phase-3 rejected by erin: certificate owner unavailable"
    assert cloud.compensations() == [
        "backend-timeout-staging-auth-service", "backend-timeout-staging-backend-service",
        "health-check-staging-auth-health-check", "health-check-staging-backend-health-check",
        "configure-backend", "route-traffic", "deploy-incident-env", "vpc-access-auth", "expand-sql"]
    assert cloud.restored_except_connector()
    assert cloud.step_calls(act.ENSURE_ALERT_POLICY) == []
    # Only the connector (irreversible) is still in force, so only it needs Terraform.
    assert [(f.step_id, f.terraform_resource) for f in report.iac_followup] == [
        ("scale-connector", "google_vpc_access_connector")]
    await keep_history(handle, "reject_phase_3")


async def test_declining_cleanup_keeps_the_remediation(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        for gate in ("phase-1", "phase-2", "phase-3", "phase-4"):
            await approve_when_pending(env, handle, gate)
        await until(env, handle, at_gate("cleanup-revisions"))
        await reject(handle, "cleanup-revisions", "alice", "keep them for forensics")
        report = await finished(handle)
    assert report.outcome == RunState.SUCCEEDED
    assert cloud.compensations() == []
    assert report.revisions_left_in_place == [
        "netra-backend-staging-00001-abc", "netra-backend-staging-00002-def",
        "netra-backend-staging-00003-new"]
    assert len(cloud.world["service/netra-backend-staging"]["revisions"]) == 4
