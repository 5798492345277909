"""The worker SIGKILLed during a rollback, one undo after another: the rollback still
restores the world as a rollback without kills does, and nothing is undone twice.

The failure: Cloud Monitoring refuses an alert policy with 403 in phase 3, so the
changes of phases 1 and 2 are undone in reverse order."""

from __future__ import annotations

import pytest

from runbook.status import RunState, StepStatus
from tests.chaos.expectations import assert_no_change_applied_twice, world
from tests.chaos.kill_points import Point
from tests.chaos.test_worker_kills import REQUEST, kill_at

pytestmark = pytest.mark.chaos


async def test_rollback_killed_during_its_undos(chaos):
    before = await world(chaos, include_connector=False)
    await chaos.sim_admin("POST", "/_sim/faults", {"api": "monitoring", "method": "POST",
                                                   "kind": "http", "status": 403})
    await chaos.start(REQUEST)
    await kill_at(chaos, Point("configure-backend", "after_mutation", undo=True))
    await kill_at(chaos, Point("route-traffic", "after_mutation", undo=True))
    await kill_at(chaos, Point("vpc-access-auth", "after_mutation", undo=True))
    await kill_at(chaos, Point("expand-sql", "in_flight", undo=True))
    report, st = await chaos.finish()

    assert len(chaos.kills) == 4
    assert report.outcome == RunState.ROLLED_BACK, report.reason
    assert "PermissionDenied" in report.reason
    steps = {s.id: s.status for s in st.steps}
    for step in ("configure-backend", "route-traffic", "vpc-access-auth", "expand-sql", "deploy-incident-env"):
        assert steps[step] == StepStatus.COMPENSATED, (step, steps[step])
    assert steps["scale-connector"] == StepStatus.LEFT_IN_PLACE
    assert await world(chaos, include_connector=False) == before
    await assert_no_change_applied_twice(chaos)
