"""A deploy whose new revision fails to start puts the previous serving state back itself
(activities/cloud_run.py ``deploy_revision``), then fails the step. The worker SIGKILLed
while phase 2's failing rollout is in flight, then again right after the self-restore's update
is accepted: the resumed attempt must reach the same verdict (the step failed, the run
rolls back) and must not issue the deploy again."""

from __future__ import annotations

import pytest

from runbook.status import RunState, StepStatus
from tests.chaos.expectations import assert_no_change_applied_twice, world
from tests.chaos.kill_points import Point
from tests.chaos.test_worker_kills import REQUEST, kill_at

pytestmark = pytest.mark.chaos

BACKEND = "netra-backend-staging"
STEP = "configure-backend"


async def test_failed_deploy_killed_during_its_self_restore_still_rolls_back(chaos):
    before = await world(chaos, include_connector=False)
    # Phase 2's deploy: traffic then follows LATEST (route-traffic), so putting the
    # previous revision back is a write of its own.
    chaos.held_gates.add("phase-2")
    await chaos.start(REQUEST)
    await chaos.wait_for(chaos.gate_pending("phase-2"), "phase 1 done")
    await chaos.sim_admin("POST", "/_sim/faults", {"api": "run", "resource": BACKEND,
                                                   "kind": "revision_start_failure"})
    chaos.release("phase-2")
    await kill_at(chaos, Point(STEP, "in_flight"))
    # The next write to the backend inside the same step is the self-restore's.
    await kill_at(chaos, Point(STEP, "after_mutation"))
    report, st = await chaos.finish()

    assert len(chaos.kills) == 2
    assert report.outcome == RunState.ROLLED_BACK, report.reason
    deploy = next(s for s in st.steps if s.id == STEP)
    assert deploy.status == StepStatus.COMPENSATED and "failed to start" in (deploy.error or "")
    assert await world(chaos, include_connector=False) == before
    await assert_no_change_applied_twice(chaos)
