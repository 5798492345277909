"""The runbook on both load-balancer topologies Google Cloud offers a Cloud Run app, and
its rollback by re-routing traffic (GCP_FIDELITY A1, A10).

- Serverless NEGs (the default world): backend timeouts are refused by Google, so asking
  for one is refused at preflight, before anything changes.
- Instance groups: health checks and backend timeouts apply, and the same default request
  changes them.
- A rollback of a Cloud Run change routes traffic back to the revisions that served
  before: no new revision, as the simulator's mutation log shows.
"""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError

from runbook.status import RunState, StepStatus
from tests.e2e.conftest import admin, queue, real_worker
from tests.e2e.world import AUTH, BACKEND, config, revisions, serving
from tests.workflow.harness import finished, GATES, approve_when_pending, at_gate, reject, start, status, until

HC_BACKEND = "projects/netra-staging/global/healthChecks/staging-backend-health-check"
BS_BACKEND = "projects/netra-staging/global/backendServices/staging-backend-service"


async def test_instance_group_backends_get_health_checks_and_timeouts(time_skipping_env, fresh_sim):
    env, sim, tq = time_skipping_env, fresh_sim, queue()
    await admin(sim, "POST", "/_sim/reset", {"world": "instance-group"})
    async with real_worker(env, sim, tq):
        handle = await start(env, {"soak": {"window_s": 60}}, tq)
        st = await until(env, handle, at_gate("phase-1"))
        assert st.plan.not_applicable == []
        for gate in GATES:
            await approve_when_pending(env, handle, gate, skip_s=30)
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.SUCCEEDED, report.reason
    assert all(s.status == StepStatus.SUCCEEDED for s in st.steps)
    world = config(await admin(sim, "GET", "/_sim/state"))
    assert world[HC_BACKEND] == {"checkIntervalSec": 30, "timeoutSec": 30,
                                 "healthyThreshold": 2, "unhealthyThreshold": 5}
    assert world[BS_BACKEND] == {"timeoutSec": 600}
    assert (await admin(sim, "GET", "/_sim/app"))["routes"]["backend"]["rate_503"] == 0


async def test_a_backend_timeout_on_serverless_negs_is_refused_at_preflight(time_skipping_env,
                                                                             fresh_sim):
    env, sim, tq = time_skipping_env, fresh_sim, queue()
    async with real_worker(env, sim, tq):
        handle = await start(env, {"desired": {"backend_service_timeout_s": 600}}, tq)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        st = await status(handle)
    assert info.value.cause.type == "PreflightFailed"
    problem = next(p for p in st.plan.problems if p.field == "desired.backend_service_timeout_s")
    assert "Timeout sec is not supported for a backend service with Serverless network " \
           "endpoint groups" in problem.reason
    assert (await admin(sim, "GET", "/_sim/mutations"))["mutations"] == []


async def test_a_rejected_phase_2_rolls_phase_1_back_by_rerouting_traffic(time_skipping_env,
                                                                          fresh_sim):
    env, sim, tq = time_skipping_env, fresh_sim, queue()
    start_state = await admin(sim, "GET", "/_sim/state")
    before = config(start_state, include_connector=False)
    async with real_worker(env, sim, tq):
        handle = await start(env, {}, tq)
        await approve_when_pending(env, handle, "phase-1")
        await until(env, handle, at_gate("phase-2"))
        after_phase_1 = await admin(sim, "GET", "/_sim/state")
        applied = len((await admin(sim, "GET", "/_sim/mutations"))["mutations"])
        await reject(handle, "phase-2", "dave", "wrong incident")
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.REJECTED
    end = await admin(sim, "GET", "/_sim/state")
    # Phase 1 deployed new revisions of both services ...
    for service in (BACKEND, AUTH):
        assert len(revisions(after_phase_1, service)) == len(revisions(start_state, service)) + 1
        # ... and the rollback sent traffic back to the old ones without creating any.
        assert revisions(end, service) == revisions(after_phase_1, service)
        assert serving(end, service) == serving(start_state, service)
    assert config(end, include_connector=False) == before
    undo = (await admin(sim, "GET", "/_sim/mutations"))["mutations"][applied:]
    run_undo = [m for m in undo if m["api"] == "run"]
    assert run_undo and all(m["method"] == "PATCH" for m in run_undo)
    undone = {e.step_id: e.detail for e in st.rollback_log if e.action == "compensated"}
    assert {"route-traffic", "deploy-incident-env", "vpc-access-auth"} <= set(undone)
