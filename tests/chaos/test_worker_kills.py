"""The worker SIGKILLed at many points of one run, a fresh worker process started each
time: the run ends as a run without kills does, and no change is applied twice.

Kill points (tests/chaos/kill_points.py) come from the default runbook's mutating steps;
several are taken per run, in the order the run reaches them.
"""

from __future__ import annotations

import pytest

from runbook.status import RunState
from tests.chaos.driver import Chaos
from tests.chaos.expectations import (
    assert_attempt_was_cut,
    assert_no_change_applied_twice,
    assert_succeeded_like_a_clean_run,
)
from tests.chaos.kill_points import Point, predicate

pytestmark = pytest.mark.chaos

# Real time: a short soak (a few samples) keeps the run inside the suite's budget.
# A failed step rolls back at once (no decision gate waiting in real time).
REQUEST = {"soak": {"window_s": 6, "sample_every_s": 3}, "on_step_failure": "rollback"}


# One kill per entry, in run order; the steps of a parallel group are cut by one kill.
# test_kill_points.py checks these cover every mutating step of the default runbook.
PHASE_1_KILLS = [
    [Point("scale-connector", "in_flight"), Point("expand-sql", "in_flight")],
    [Point("vpc-access-auth", "after_mutation")],
    [Point("deploy-incident-env", "in_flight")],
    [Point("route-traffic", "after_mutation")],
]
LATER_KILLS = [
    [Point("configure-backend", "in_flight")],
    [Point("alert-1", "after_mutation")],
    [Point("ensure-certificate", "in_flight")],
]
CLEANUP_KILL = Point("delete-old-revisions", "after_mutation")


async def kill_at(chaos: Chaos, *points: Point) -> None:
    """Kill the worker once every point holds (several: parallel steps, one kill)."""
    since = await chaos.last_seq()
    checks = [predicate(chaos, p, since) for p in points]

    async def all_hold():
        for check in checks:
            if not await check():
                return None
        return True
    await chaos.kill_worker_at(" + ".join(p.name for p in points), all_hold)


async def test_phase_1_steps_killed_in_flight_and_between_write_and_checkpoint(chaos):
    await chaos.start(REQUEST)
    for points in PHASE_1_KILLS:
        await kill_at(chaos, *points)
    report, st = await chaos.finish()

    assert len(chaos.kills) == len(PHASE_1_KILLS)
    assert_succeeded_like_a_clean_run(report, st)
    assert_attempt_was_cut(st, ["scale-connector", "expand-sql", "vpc-access-auth",
                                "deploy-incident-env"])
    await assert_no_change_applied_twice(chaos)


async def test_later_phases_gate_soak_and_cleanup_killed(chaos):
    chaos.held_gates.add("phase-2")
    await chaos.start(REQUEST)
    await chaos.kill_worker_at("gate phase-2 waiting", chaos.gate_pending("phase-2"))
    chaos.release("phase-2")
    for points in LATER_KILLS:
        await kill_at(chaos, *points)

    async def soak_between_samples():
        st = await chaos.try_status()
        return (st and st.state == RunState.VALIDATING and st.phases[3].soak_samples >= 1
                and not await chaos.pending_activities())
    await chaos.kill_worker_at("soak between samples", soak_between_samples)
    await kill_at(chaos, CLEANUP_KILL)
    report, st = await chaos.finish()

    assert len(chaos.kills) == len(LATER_KILLS) + 3
    assert_succeeded_like_a_clean_run(report, st)
    assert_attempt_was_cut(st, ["configure-backend", "ensure-certificate"])
    await assert_no_change_applied_twice(chaos)

