"""Decide on failure: under ``on_step_failure: ask`` a failed step opens ``decide-<step>``.

Time-skipping scenarios for retry, skip (refused for a step the runbook does not mark
skippable), rollback and the decision gate's timeout; each history is saved and replayed.
"""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from runbook.messages import UPDATE_DECIDE
from runbook.status import RunState, StepStatus
from tests.workflow.doubles import FakeCloud
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

PHASE_1 = ["scale-connector", "expand-sql", "vpc-access-auth", "deploy-incident-env", "route-traffic"]


def quota_error() -> ApplicationError:
    return ApplicationError("429 quota exceeded for cpus in us-central1", type="FailedPrecondition",
                            non_retryable=True)


async def decide(handle, gate: str, decision: str, by: str = "bob", reason: str = ""):
    return await handle.execute_update(UPDATE_DECIDE, {"gate": gate, "decision": decision,
                                                       "by": by, "reason": reason})


async def refused(handle, gate: str, decision: str, **kw) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await decide(handle, gate, decision, **kw)
    return str(info.value.cause)


async def to_decision(env, handle, gate: str, approve_upto: int):
    for g in GATES[:approve_upto]:
        await approve_when_pending(env, handle, g)
    return await until(env, handle, at_gate(gate))


async def test_ask_then_retry_succeeds_and_keeps_phase_1(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["configure-backend"] = [quota_error]
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK, "requested_by": "carol"}, tq)
        st = await to_decision(env, handle, "decide-configure-backend", 2)
        g = st.pending_gate
        assert st.state == RunState.AWAITING_DECISION and g.kind == "decision"
        assert g.options == ["retry", "rollback"] and "quota" in g.failure and g.attempts == 1
        assert set(PHASE_1) - {"scale-connector"} <= set(g.in_force)
        # Nothing was rolled back while the gate waits; the phase's escalation chain is paged.
        assert cloud.compensations() == []
        assert any(e.gate == g.id and e.level == "escalation" for e in st.escalations)
        assert "does not mark configure-backend skippable" in await refused(
            handle, g.id, "skip", reason="x")
        assert "two-person rule" in await refused(handle, g.id, "retry", by="carol")
        assert "decision gate" in await refused(handle, "phase-2", "retry")
        with pytest.raises(WorkflowUpdateFailedError) as info:  # approvals do not answer it
            await approve(handle, g.id)
        assert "decide_failure" in str(info.value.cause)
        await decide(handle, g.id, "retry", reason="quota raised")
        for gate in GATES[2:]:
            await approve_when_pending(env, handle, gate)
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.SUCCEEDED
    assert cloud.step_calls("deploy_revision").count("configure-backend") == 2
    backend = next(s for s in st.steps if s.id == "configure-backend")
    assert backend.status == StepStatus.SUCCEEDED and backend.changed
    assert [(d.gate, d.decision, d.by) for d in report.decisions] == [
        ("decide-configure-backend", "retry", "bob")]
    await keep_history(handle, "decide_retry")


async def test_ask_then_skip_a_skippable_step_is_recorded_on_its_phase(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["alert-1"] = [quota_error]
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        st = await to_decision(env, handle, "decide-alert-1", 3)
        assert st.pending_gate.options == ["retry", "skip", "rollback"]
        assert "reason" in await refused(handle, "decide-alert-1", "skip")  # a skip says why
        await decide(handle, "decide-alert-1", "skip", reason="add the policy by hand later")
        await approve_when_pending(env, handle, "phase-4")
        await approve_when_pending(env, handle, "cleanup-revisions")
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.SUCCEEDED
    alert = next(s for s in st.steps if s.id == "alert-1")
    assert alert.status == StepStatus.SKIPPED and "skipped by bob" in alert.detail
    assert report.phases[2].skipped_steps == ["alert-1 by bob: add the policy by hand later"]
    await keep_history(handle, "decide_skip")


async def test_ask_then_rollback_undoes_every_phase(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["configure-backend"] = [quota_error]
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await to_decision(env, handle, "decide-configure-backend", 2)
        await decide(handle, "decide-configure-backend", "rollback", reason="quota not coming")
        report = await finished(handle)
    assert report.outcome == RunState.ROLLED_BACK
    assert "bob decided to roll back: quota not coming" in report.reason
    assert cloud.restored_except_connector()
    await keep_history(handle, "decide_rollback")


async def test_decision_gate_timeout_rolls_back_after_its_ladder(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["configure-backend"] = [quota_error]
    request = {"soak": FAST_SOAK, "on_step_failure": {
        "decision_gate": {"remind_after_s": 60, "escalate_after_s": 120, "timeout_s": 300}}}
    async with worker_for(env, cloud, tq):
        handle = await start(env, request, tq)
        await to_decision(env, handle, "decide-configure-backend", 2)
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.ROLLED_BACK and "timed out after 300s" in report.reason
    levels = [e.level for e in st.escalations if e.gate == "decide-configure-backend"]
    assert levels == ["escalation", "reminder", "escalation", "breach"]
    g = next(g for g in st.gates if g.id == "decide-configure-backend")
    assert g.status == "TIMED_OUT" and g.decision.decision == "timeout"
    assert cloud.restored_except_connector()
    await keep_history(handle, "decide_timeout")


async def test_phase_1_rolls_back_at_once_by_default(time_skipping_env):
    """Phase 1's default is rollback: nothing before it is worth keeping."""
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["deploy-incident-env"] = [quota_error]
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await approve_when_pending(env, handle, "phase-1")
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.ROLLED_BACK
    assert not any(g.kind == "decision" for g in st.gates)


async def test_bad_policy_is_refused_naming_the_field(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"on_step_failure": "sometimes"}, tq)
        with pytest.raises(Exception) as info:
            await handle.result()
    assert "on_step_failure" in str(info.value.cause)
    assert cloud.calls == []
