"""The worker SIGKILLed while a read is in flight: the diagnosis, the probes, a soak sample.

A dead worker's read must cost seconds, not its whole start-to-close timeout (5 minutes
for diagnose, 2 for a soak sample): reads heartbeat, so the server retries them on the
fresh worker after the heartbeat timeout. Each resumption is given ``RECOVERY_S``; a
read that does not come back by then fails the test instead of stalling the suite.

Reads take milliseconds against the simulator, so each is held in flight by freezing
gcpsim (SIGSTOP) just before the read starts, and thawed once the worker is dead.
"""

from __future__ import annotations

import asyncio

import pytest

from runbook import activity_names as act
from runbook.status import RunState
from tests.chaos.driver import Chaos
from tests.chaos.expectations import (
    assert_no_change_applied_twice,
    assert_succeeded_like_a_clean_run,
)
from tests.conftest import release_lease_of

pytestmark = pytest.mark.chaos

# Heartbeat timeout (10 s) + first retry interval (2 s) + a worker's start, with room.
RECOVERY_S = 45.0
REQUEST = {"soak": {"window_s": 6, "sample_every_s": 3}, "on_step_failure": "rollback"}


def read_running(chaos: Chaos, *activity_types: str):
    async def check():
        return [p for p in await chaos.pending_activities()
                if p.activity_type.name in activity_types]
    return check


def recovered(chaos: Chaos, done):
    async def check():
        st = await chaos.try_status()
        return st is not None and done(st)
    return check


async def kill_while_frozen(chaos: Chaos, point: str, predicate) -> None:
    try:
        await chaos.kill_worker_at(point, predicate)
    finally:
        await asyncio.to_thread(chaos.sim.thaw)


async def test_reads_killed_in_flight_resume_within_seconds(chaos):
    chaos.held_gates.add("phase-4")
    await asyncio.to_thread(chaos.sim.freeze)
    await chaos.start(REQUEST)
    try:
        await kill_while_frozen(chaos, "diagnose in flight", read_running(chaos, act.DIAGNOSE))
        await chaos.wait_for(recovered(chaos, lambda st: st.plan is not None),
                             "diagnosis resumed", RECOVERY_S)

        await chaos.wait_for(chaos.gate_pending("phase-4"), "phases 1-3 done")
        await asyncio.to_thread(chaos.sim.freeze)
        chaos.release("phase-4")
        await kill_while_frozen(chaos, "probes in flight",
                                read_running(chaos, act.PROBE_HEALTH, act.PROBE_WEBSOCKET))
        await chaos.wait_for(recovered(chaos, lambda st: st.phases[3].soak_samples >= 1),
                             "probes resumed", RECOVERY_S)

        await asyncio.to_thread(chaos.sim.freeze)  # the next sample hangs
        await kill_while_frozen(chaos, "soak sample in flight",
                                read_running(chaos, act.SAMPLE_ERROR_RATE))
        await chaos.wait_for(recovered(chaos, lambda st: st.state != RunState.VALIDATING),
                             "soak resumed", RECOVERY_S)
    except AssertionError:
        # Leave no stalled run holding the targets' lease for the next test.
        await release_lease_of(chaos.handle)
        await chaos.handle.terminate("read did not resume in time")
        raise
    report, st = await chaos.finish()

    assert len(chaos.kills) == 3
    assert_succeeded_like_a_clean_run(report, st)
    await assert_no_change_applied_twice(chaos)
