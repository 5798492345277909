"""What every chaos run is checked against: the end state a run without faults reaches,
and a mutation log with no change applied twice (tests/chaos/mutation_log.py)."""

from __future__ import annotations

import asyncio

from runbook.status import RunState, StepStatus
from tests.chaos.driver import Chaos
from tests.chaos.mutation_log import applied_twice
from tests.e2e.world import config


async def assert_no_change_applied_twice(chaos: Chaos) -> None:
    mutations = await chaos.mutations()
    twice = applied_twice(mutations)
    assert not twice, (f"changes applied twice after kills {[k.point for k in chaos.kills]}: "
                       f"{twice}")


def assert_succeeded_like_a_clean_run(report, st) -> None:
    """SUCCEEDED with every step done, except those the plan found not applicable."""
    assert report.outcome == RunState.SUCCEEDED, report.reason
    skipped = {n.step_id for n in st.plan.not_applicable}
    for step in st.steps:
        want = StepStatus.SKIPPED if step.id in skipped else StepStatus.SUCCEEDED
        assert step.status == want, (step.id, step.status, step.error)


def assert_attempt_was_cut(st, step_ids: list[str]) -> None:
    """The step's killed attempt was retried: its successful attempt is not the first."""
    attempts = {s.id: s.attempts for s in st.steps}
    for step_id in step_ids:
        assert attempts[step_id] >= 2, (step_id, attempts[step_id])


async def world(chaos: Chaos, include_connector: bool = True) -> dict:
    """The configuration a rollback must restore (tests/e2e/world.py)."""
    state = await asyncio.to_thread(chaos.sim.admin, "GET", "/_sim/state")
    return config(state, include_connector=include_connector)
