"""The whole runbook on the simulator: success, forced failure, soak bursts."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from runbook.status import RunState, StepStatus
from tests.e2e.conftest import admin, queue, real_worker
from tests.e2e.world import AUTH, BACKEND, CONNECTOR, config
from tests.workflow.harness import (
    finished,
    GATES,
    approve_when_pending,
    at_gate,
    start,
    status,
    until,
)


LOAD_BALANCER_STEPS = {
    "health-check-staging-backend-health-check", "health-check-staging-auth-health-check",
    "backend-timeout-staging-backend-service", "backend-timeout-staging-auth-service"}


async def _count_503(sim, n: int = 100) -> int:
    async with httpx.AsyncClient(base_url=sim.endpoint, timeout=10) as http:
        codes = [(await http.get("/health")).status_code for _ in range(n)]
    return codes.count(503)


async def test_default_request_remediates_the_simulated_outage(time_skipping_env, fresh_sim):
    env, sim, tq = time_skipping_env, fresh_sim, queue()
    assert (await admin(sim, "GET", "/_sim/app"))["routes"]["backend"]["rate_503"] > 0.3
    assert await _count_503(sim) > 30
    async with real_worker(env, sim, tq):
        handle = await start(env, {}, tq)
        for gate in GATES:
            await approve_when_pending(env, handle, gate, approver="alice", skip_s=30)
        report = await finished(handle)
        st = await status(handle)

    assert report.outcome == RunState.SUCCEEDED, report.reason
    # Behind serverless NEGs the load-balancer steps are shown as not applicable and
    # skipped; everything else ran.
    skipped = {s.id for s in st.steps if s.status == StepStatus.SKIPPED}
    assert skipped == {n.step_id for n in st.plan.not_applicable} == LOAD_BALANCER_STEPS
    assert all(s.status == StepStatus.SUCCEEDED for s in st.steps if s.id not in skipped)
    app = await admin(sim, "GET", "/_sim/app")
    assert app["routes"]["backend"]["rate_503"] == 0
    assert await _count_503(sim) == 0

    world = config(await admin(sim, "GET", "/_sim/state"))
    assert world[CONNECTOR] == {"machineType": "e2-standard-4", "minInstances": 3,
                                "maxInstances": 10, "state": "READY"}
    sql = world["projects/netra-staging/instances/netra-staging-db"]
    # max_connections left at the tier's default (400 for 7.5 GiB; GCP_FIDELITY A8).
    assert sql["tier"] == "db-custom-2-7680" and not dict(sql["flags"]).get("max_connections")
    [backend] = world[BACKEND].values()
    assert backend["percent"] == 100
    assert backend["env"][0]["DATABASE_POOL_SIZE"] == "8"
    assert backend["env"][0]["DATABASE_CONNECTION_TIMEOUT"] == "45"
    assert backend["limits"] == [{"cpu": "4", "memory": "6Gi"}]
    assert backend["timeout"] == "900s"
    probe = backend["startupProbe"][0]
    # The longest start Cloud Run lets a probe tolerate: 240 s delay + 24 x 10 s.
    assert (probe["initialDelaySeconds"], probe["failureThreshold"] * probe["periodSeconds"]) == (240, 240)
    [auth] = world[AUTH].values()
    assert auth["vpcAccess"]["egress"] in ("PRIVATE_RANGES_ONLY", 2)
    assert sum(1 for k in world if "/sslCertificates/" in k) == 2  # the legacy one and ours
    proxy = world["projects/netra-staging/global/targetHttpsProxies/staging-https-proxy"]
    assert [u.rsplit("/", 1)[-1] for u in proxy["sslCertificates"]] == [
        "staging-legacy-cert", "staging-netrasystems-ai-cert"]
    assert sum(1 for k in world if "/alertPolicies/" in k) == 5
    state = await admin(sim, "GET", "/_sim/state")
    revisions = [k for k in state["run"] if k.startswith(BACKEND + "/revisions/")]
    assert len(revisions) == 1  # the old ones were deleted behind the cleanup gate

    # Each change was applied exactly once: no resource got the same write twice.
    mutations = (await admin(sim, "GET", "/_sim/mutations"))["mutations"]
    writes = Counter((m["api"], m["method"], m["resource"], repr(m["after"])) for m in mutations)
    assert max(writes.values()) == 1
    by_resource = Counter(m["resource"].split("/")[-1] for m in mutations
                          if m["method"] != "DELETE")
    assert by_resource["staging-connector"] == 1
    assert by_resource["netra-staging-db"] == 1
    assert by_resource["staging-backend-health-check"] == 0  # not applicable: never sent
    assert by_resource["staging-backend-service"] == 0
    assert by_resource["staging-netrasystems-ai-cert"] == 1
    assert by_resource["staging-https-proxy"] == 1


async def test_forced_failure_in_phase_1_restores_the_world(time_skipping_env, fresh_sim):
    env, sim, tq = time_skipping_env, fresh_sim, queue()
    before = config(await admin(sim, "GET", "/_sim/state"), include_connector=False)
    # The incident-env revision will fail to start: phase 1 fails after the connector
    # and Cloud SQL changes were applied.
    await admin(sim, "POST", "/_sim/faults", {"api": "run", "resource": "netra-backend-staging",
                                              "kind": "revision_start_failure"})
    async with real_worker(env, sim, tq):
        handle = await start(env, {"soak": {"window_s": 60}}, tq)
        await approve_when_pending(env, handle, "phase-1")
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.ROLLED_BACK
    assert "OperationFailed" in report.reason and "failed to start" in report.reason
    steps = {s.id: s.status for s in st.steps}
    deploy = next(s for s in st.steps if s.id == "deploy-incident-env")
    # It failed after issuing its change, so its checkpoint put it on the saga stack.
    assert deploy.attempts == 1 and deploy.changed and deploy.before["template"]
    assert steps["deploy-incident-env"] == StepStatus.COMPENSATED
    assert steps["route-traffic"] == StepStatus.PENDING
    assert steps["expand-sql"] == StepStatus.COMPENSATED
    assert steps["scale-connector"] == StepStatus.LEFT_IN_PLACE
    after = config(await admin(sim, "GET", "/_sim/state"), include_connector=False)
    assert after == before
    world = config(await admin(sim, "GET", "/_sim/state"))
    assert world[CONNECTOR]["maxInstances"] == 10  # irreversible, reported left in place
    assert [c.step_id for c in report.changes_left_in_place] == ["scale-connector"]
    assert [f.terraform_resource for f in report.iac_followup] == ["google_vpc_access_connector"]


async def _run_to_soak(env, sim, handle) -> None:
    for gate in GATES[:4]:
        await approve_when_pending(env, handle, gate, skip_s=5)
    await until(env, handle, lambda s: s.phases[3].soak_samples >= 1, skip_s=5)


async def test_503_burst_restarts_the_soak_window(time_skipping_env, fresh_sim):
    env, sim, tq = time_skipping_env, fresh_sim, queue()
    request = {"soak": {"window_s": 300, "sample_every_s": 60, "requests_per_sample": 20}}
    async with real_worker(env, sim, tq):
        handle = await start(env, request, tq)
        await _run_to_soak(env, sim, handle)
        await admin(sim, "POST", "/_sim/faults", {"api": "app", "kind": "app_503", "count": 30})
        st = await until(env, handle, at_gate("cleanup-revisions"), skip_s=20)
        await approve_when_pending(env, handle, "cleanup-revisions")
        report = await finished(handle)
    assert report.outcome == RunState.SUCCEEDED
    p4 = st.phases[3]
    assert p4.soak_restarts >= 1
    # The clean window restarted after the burst and still ran its full length.
    assert (p4.finished_at - p4.soak_clean_since).total_seconds() >= 300
    soak = next(s for s in st.steps if s.id == "soak")
    assert soak.status == StepStatus.SUCCEEDED and "without 503" in soak.detail
    assert p4.soak_samples >= 6


async def test_burst_past_the_hard_limit_rolls_back_all_four_phases(time_skipping_env, fresh_sim):
    env, sim, tq = time_skipping_env, fresh_sim, queue()
    before = config(await admin(sim, "GET", "/_sim/state"), include_connector=False)
    request = {"soak": {"window_s": 600, "sample_every_s": 60, "requests_per_sample": 5},
               "budgets": {"phase_4_s": 300, "hard_limit_factor": 2.0}}
    async with real_worker(env, sim, tq):
        handle = await start(env, request, tq)
        await _run_to_soak(env, sim, handle)
        await admin(sim, "POST", "/_sim/faults", {"api": "app", "kind": "app_503", "count": 100000})
        report = await finished(handle)
        st = await status(handle)
    await admin(sim, "DELETE", "/_sim/faults")
    assert report.outcome == RunState.ROLLED_BACK
    assert "hard limit" in report.reason
    assert [(e.level, e.recipient) for e in report.escalations if e.phase == 4] == [
        ("approval", "QA Team Lead"), ("breach", "QA Team Lead"), ("escalation", "Head of Quality"),
        ("hard_limit", "Head of Quality")]
    undone = [e.step_id for e in st.rollback_log if e.action == "compensated"]
    assert undone[0] == "ensure-certificate" and undone[-1] == "expand-sql"
    order = {sid: i for i, sid in enumerate(undone)}
    assert order["alert-1"] < order["configure-backend"] < order["route-traffic"] \
        < order["deploy-incident-env"]
    after = config(await admin(sim, "GET", "/_sim/state"), include_connector=False)
    assert after == before
    assert await asyncio.wait_for(_count_503(sim, 20), 30) > 0  # the outage is back
