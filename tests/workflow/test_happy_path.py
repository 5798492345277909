"""Happy paths: every gate approved, with a custom request and with ``{}``."""

from __future__ import annotations

from datetime import timedelta


from runbook import activity_names as act
from runbook.status import RemediationReport, RunState, StepStatus
from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import (
    finished,
    FAST_SOAK,
    GATES,
    approve_when_pending,
    at_gate,
    keep_history,
    new_queue,
    start,
    status,
    until,
    worker_for,
)
from workflows import search_attributes as sa

MUTATING_STEPS = [
    "scale-connector", "expand-sql", "vpc-access-auth", "deploy-incident-env", "route-traffic",
    "configure-backend",
    "health-check-staging-backend-health-check", "health-check-staging-auth-health-check",
    "backend-timeout-staging-backend-service", "backend-timeout-staging-auth-service",
    "alert-1", "alert-2", "alert-3", "alert-4", "alert-5", "ensure-certificate",
    "delete-old-revisions",
]


async def test_happy_path_through_all_gates(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"incident_id": "INC-42", "requested_by": "carol",
                                   "soak": FAST_SOAK}, tq)
        st = await until(env, handle, at_gate("phase-1"))
        assert st.state == RunState.AWAITING_APPROVAL
        assert st.plan is not None and st.plan.digest and not st.plan.problems
        planned = {(c.step_id, c.field) for c in st.plan.changes}
        assert ("scale-connector", "maxInstances") in planned
        assert ("expand-sql", "settings.tier") in planned
        assert not next(c for c in st.plan.changes if c.step_id == "scale-connector").reversible
        assert st.pending_gate.timeout_at - st.pending_gate.opened_at == timedelta(hours=2)

        for gate in GATES:
            ack = await approve_when_pending(env, handle, gate, approver="alice")
            assert ack.accepted and ack.gate_status == "APPROVED"
        report = await finished(handle)
        st = await status(handle)  # queries need a live worker, even after the run ends

    assert isinstance(report, RemediationReport)
    assert report.outcome == RunState.SUCCEEDED
    assert [a.gate for a in report.approvals] == GATES
    assert {a.approver for a in report.approvals} == {"alice"}
    # Exactly the mutating steps ran, each applied once, nothing compensated.
    assert sorted(cloud.step_calls(act.SCALE_CONNECTOR) + cloud.step_calls(act.EXPAND_SQL)) == \
        ["expand-sql", "scale-connector"]
    assert sorted(c.step_id for c in report.changes_applied) == sorted(MUTATING_STEPS)
    assert report.changes_reverted == [] and report.changes_left_in_place == []
    assert cloud.compensations() == []
    assert len(cloud.mutations) == len(MUTATING_STEPS)  # one change per mutating step
    assert cloud.world["service/netra-backend-staging"]["revisions"] == \
        ["netra-backend-staging-00004-new"]
    assert [p.status for p in report.phases] == ["SUCCEEDED"] * 4

    assert st.state == RunState.SUCCEEDED
    assert all(s.status == StepStatus.SUCCEEDED for s in st.steps)
    assert next(s for s in st.steps if s.id == "soak").detail.startswith("120s without 503")
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(sa.STATE) == "SUCCEEDED"
    assert desc.typed_search_attributes.get(sa.INCIDENT) == "INC-42"
    assert desc.typed_search_attributes.get(sa.PHASE) == 4
    await keep_history(handle, "happy_path")


async def test_empty_input_runs_the_default_runbook(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {}, tq)
        for gate in GATES[:4]:
            await approve_when_pending(env, handle, gate, approver="bob", skip_s=30)
        st = await until(env, handle, at_gate("cleanup-revisions"), skip_s=30)
        phase4 = st.phases[3]
        # The default soak: 15 continuous minutes, sampled every minute on timers.
        assert phase4.soak_samples >= 15 and phase4.soak_restarts == 0
        await approve_when_pending(env, handle, "cleanup-revisions", approver="bob")
        report = await finished(handle)
    assert report.outcome == RunState.SUCCEEDED
    assert report.incident_id == "1278"
    sql = cloud.world["sql/netra-staging-db"]
    # max_connections is left at the new tier's default (400), which the seeds' 300 would
    # have lowered (GCP_FIDELITY A8).
    assert sql == {"tier": "db-custom-2-7680", "flags": {}}
    assert cloud.world["connector/staging-connector"] == {
        "machine_type": "e2-standard-4", "min_instances": 3, "max_instances": 10}
    assert [p.budget_s for p in report.phases] == [3600] * 4
    await keep_history(handle, "empty_input")


LOAD_BALANCER_STEPS = [
    "health-check-staging-backend-health-check", "health-check-staging-auth-health-check",
    "backend-timeout-staging-backend-service", "backend-timeout-staging-auth-service"]


async def test_serverless_backends_skip_the_load_balancer_steps(time_skipping_env):
    """Behind serverless NEGs Google refuses backend timeouts and ignores health checks:
    the plan says so, and those steps are skipped, never attempted."""
    env, cloud, tq = time_skipping_env, FakeCloud(serverless=True), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        st = await until(env, handle, at_gate("phase-1"))
        assert sorted(n.step_id for n in st.plan.not_applicable) == sorted(LOAD_BALANCER_STEPS)
        timeout_na = next(n for n in st.plan.not_applicable
                          if n.step_id == "backend-timeout-staging-backend-service")
        assert "Timeout sec is not supported" in timeout_na.reason
        assert not {c.step_id for c in st.plan.changes} & set(LOAD_BALANCER_STEPS)
        # The startup probe and the auth service's egress are what change instead.
        planned = {(c.step_id, c.field): c for c in st.plan.changes}
        assert planned[("deploy-incident-env", "startupProbe")].desired["window_s"] == 480
        assert planned[("vpc-access-auth", "vpcAccess.egress")].current == "ALL_TRAFFIC"
        assert planned[("ensure-certificate", "sslCertificates")].desired == [
            "staging-legacy-cert", "staging-netrasystems-ai-cert"]
        for gate in GATES:
            await approve_when_pending(env, handle, gate)
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.SUCCEEDED
    assert cloud.step_calls(act.CONFIGURE_HEALTH_CHECK) == []
    assert cloud.step_calls(act.SET_BACKEND_SERVICE_TIMEOUT) == []
    skipped = {s.id: s for s in st.steps if s.status == StepStatus.SKIPPED}
    assert sorted(skipped) == sorted(LOAD_BALANCER_STEPS)
    assert all(s.detail.startswith("not applicable: ") for s in skipped.values())
    assert cloud.step_calls(act.CHECK_REDIS) == ["check-redis"]
    # Every change left in force names the Terraform edit that keeps it.
    iac = {(f.terraform_resource, f.resource): f for f in report.iac_followup}
    connector = iac[("google_vpc_access_connector", "staging-connector")]
    assert "destroys and recreates" in connector.note
    assert iac[("google_compute_target_https_proxy", "staging-https-proxy")].attributes == \
        ["ssl_certificates"]
    deploys = [f for f in report.iac_followup if f.step_id == "deploy-incident-env"]
    assert deploys[0].terraform_resource == "google_cloud_run_v2_service"
    assert "template.containers.startup_probe" in deploys[0].attributes
    assert not any(f.terraform_resource.startswith("google_compute_health_check")
                   for f in report.iac_followup)
    await keep_history(handle, "serverless_happy_path")
