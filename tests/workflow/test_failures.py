"""Retries, non-retryable failures with reverse compensation, bad input, preflight."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from runbook import activity_names as act
from runbook.status import RunState, StepStatus
from tests.workflow.doubles import FakeCloud, default_world
from tests.workflow.harness import (
    finished,
    FAST_SOAK,
    GATES,
    approve_when_pending,
    keep_history,
    new_queue,
    start,
    status,
    worker_for,
)


async def test_retryable_failure_succeeds_on_retry(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    # Cloud SQL allows one admin operation at a time: 409 operationInProgress twice.
    cloud.failures["expand-sql"] = [
        ApplicationError("409 operationInProgress", type="Conflict"),
        ApplicationError("409 operationInProgress", type="Conflict"),
    ]
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        for gate in GATES:
            await approve_when_pending(env, handle, gate, approver="dave")
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.SUCCEEDED
    sql_step = next(s for s in st.steps if s.id == "expand-sql")
    assert sql_step.status == StepStatus.SUCCEEDED and sql_step.attempts == 3
    assert cloud.step_calls(act.EXPAND_SQL) == ["expand-sql"] * 3
    assert cloud.mutations.count("sql/netra-staging-db") == 1
    await keep_history(handle, "retry_succeeds")


async def test_non_retryable_failure_in_phase_2_compensates_phases_1_and_2(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["backend-timeout-staging-auth-service"] = [
        ApplicationError("400 timeoutSec out of range", type="InvalidArgument", non_retryable=True)]
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await approve_when_pending(env, handle, "phase-1")
        await approve_when_pending(env, handle, "phase-2")
        report = await finished(handle)
        st = await status(handle)

    assert report.outcome == RunState.ROLLED_BACK
    assert "InvalidArgument: 400 timeoutSec out of range" in report.reason
    failed = next(s for s in st.steps if s.id == "backend-timeout-staging-auth-service")
    assert failed.status == StepStatus.FAILED and failed.attempts == 1
    # The parallel load-balancer group finished its other steps, then everything applied
    # was undone in exact reverse order; the connector is reported left in place.
    assert cloud.compensations() == [
        "backend-timeout-staging-backend-service",
        "health-check-staging-auth-health-check",
        "health-check-staging-backend-health-check",
        "configure-backend", "route-traffic", "deploy-incident-env", "vpc-access-auth", "expand-sql"]
    assert cloud.restored_except_connector()
    assert [c.step_id for c in report.changes_left_in_place] == ["scale-connector"]
    assert cloud.step_calls(act.CHECK_SECRETS) == []  # nothing after the failing group ran
    assert [p.status for p in report.phases] == ["SUCCEEDED", "FAILED", "PENDING", "PENDING"]
    await keep_history(handle, "non_retryable_phase_2")


async def test_bad_request_fails_at_once_and_runs_no_activity(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    bad = {"desired": {"connector_max_instances": 30, "sql_tier": "db-g1-standard-2"},
           "budgets": {"phase_1_s": -5}, "unexpected": True}
    async with worker_for(env, cloud, tq):
        handle = await start(env, bad, tq)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidRequest"
    assert cause.non_retryable
    for field in ("desired.connector_max_instances", "desired.sql_tier", "budgets.phase_1_s",
                  "unexpected"):
        assert field in cause.message
    assert "db-g1-standard-2' is not a Cloud SQL tier" in cause.message
    assert cloud.calls == [] and cloud.notifications == []
    await keep_history(handle, "bad_request")


async def test_preflight_problem_fails_before_any_change(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    # The connector already runs min 4: desired min 3 would be a scale-down, which
    # Google refuses. The plan says so and nothing is changed.
    cloud.world["connector/staging-connector"]["min_instances"] = 4
    async with worker_for(env, cloud, tq):
        handle = await start(env, {}, tq)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        st = await status(handle)
    cause = info.value.cause
    assert cause.type == "PreflightFailed"
    assert "desired.connector_min_instances: connectors do not scale down" in cause.message
    assert [a for a, _ in cloud.calls] == [act.DIAGNOSE]
    assert cloud.mutations == []
    assert st.state == RunState.FAILED and st.plan.problems
    await keep_history(handle, "preflight_refused")


async def test_failed_compensation_fails_the_run_loudly(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["check-secrets"] = [
        ApplicationError("secret jwt-secret-staging DISABLED", type="StepFailed", non_retryable=True)]
    cloud.failures["undo-expand-sql"] = [
        ApplicationError("403 permission denied", type="PermissionDenied", non_retryable=True)]
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await approve_when_pending(env, handle, "phase-1")
        await approve_when_pending(env, handle, "phase-2")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        st = await status(handle)
    assert info.value.cause.type == "RollbackIncomplete"
    assert st.state == RunState.FAILED
    sql = next(s for s in st.steps if s.id == "expand-sql")
    assert sql.status == StepStatus.COMPENSATION_FAILED
    # Every other reversible change was still undone; the SQL change stays recorded.
    assert ("expand-sql", "compensation_failed") in [(e.step_id, e.action) for e in st.rollback_log]
    assert cloud.world["service/netra-backend-staging"] == default_world()["service/netra-backend-staging"]
    assert cloud.world["sql/netra-staging-db"]["tier"] == "db-custom-2-7680"
    report = info.value.cause.details[0]
    assert sorted(c["step_id"] for c in report["changes_left_in_place"]) == ["expand-sql", "scale-connector"]


async def test_an_undecodable_compensation_result_does_not_stop_the_rollback(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["check-secrets"] = [
        ApplicationError("secret redis-url missing", type="StepFailed", non_retryable=True)]
    cloud.garbled_undo = {"configure-backend"}
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await approve_when_pending(env, handle, "phase-1")
        await approve_when_pending(env, handle, "phase-2")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        st = await status(handle)
    # The plain decoding exception neither hung the workflow task nor skipped the
    # remaining compensations; the run fails loudly with the step still recorded.
    assert info.value.cause.type == "RollbackIncomplete"
    steps = {s.id: s.status for s in st.steps}
    assert steps["configure-backend"] == StepStatus.COMPENSATION_FAILED
    assert steps["route-traffic"] == StepStatus.COMPENSATED
    assert steps["expand-sql"] == StepStatus.COMPENSATED
    assert cloud.compensations()[-4:] == ["route-traffic", "deploy-incident-env", "vpc-access-auth",
                                          "expand-sql"]


async def test_a_failed_step_reports_the_attempt_it_failed_on(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["check-secrets"] = [
        ApplicationError("503 backend error", type="Unavailable"),
        ApplicationError("503 backend error", type="Unavailable"),
        ApplicationError("secret redis-url missing", type="StepFailed", non_retryable=True)]
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await approve_when_pending(env, handle, "phase-1")
        await approve_when_pending(env, handle, "phase-2")
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.ROLLED_BACK
    step = next(s for s in st.steps if s.id == "check-secrets")
    assert step.status == StepStatus.FAILED and step.attempts == 3
    assert step.error == "StepFailed: secret redis-url missing"
