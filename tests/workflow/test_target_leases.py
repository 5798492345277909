"""One run per target: a second run on the same targets is refused or waits its turn."""

from __future__ import annotations

from runbook import activity_names as act
from runbook.status import RunState
from tests.workflow.doubles import _COMPENSATIONS, FakeCloud
from tests.workflow.harness import (
    approve_when_pending,
    at_gate,
    finished,
    keep_history,
    new_queue,
    reject,
    start,
    status,
    until,
    worker_for,
)


def diagnose_positions(cloud: FakeCloud) -> list[int]:
    return [i for i, (name, _) in enumerate(cloud.calls) if name == act.DIAGNOSE]


async def test_refuse_names_the_holder_and_changes_nothing(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        first = await start(env, {}, tq)
        st = await until(env, first, at_gate("phase-1"))
        assert st.lease is not None and st.lease.state == "granted"
        second = await start(env, {"incident_id": "1278-b"}, tq)  # default policy: refuse
        report = await finished(second)
        st2 = await status(second)
        # A terminated holder does not block: the keeper sees it is gone and recovers
        # the lease when the next run asks.
        await first.terminate("operator terminated the run")
        third = await start(env, {"incident_id": "1278-c"}, tq)
        st3 = await until(env, third, at_gate("phase-1"))
    assert report.outcome == RunState.REFUSED
    assert first.id in report.reason
    assert st2.lease.state == "refused" and st2.lease.holders[0].workflow_id == first.id
    assert "projects/" in st2.lease.holders[0].resources[0]
    # The refused run read nothing, so it could change nothing: one diagnose (the first
    # run's) before the third run's. (No run here passed its first gate: the mutation log
    # stays empty; the wait test below proves no mutation while another run has changed.)
    assert len(diagnose_positions(cloud)) == 2 and cloud.mutations == []
    assert st3.lease.state == "granted"
    await keep_history(second, "lease_refused")


async def test_wait_queues_behind_the_holder_and_runs_after_its_rollback(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        first = await start(env, {}, tq)
        await approve_when_pending(env, first, "phase-1")
        await until(env, first, at_gate("phase-2"))
        second = await start(env, {"incident_id": "1278-b", "lease": {"policy": "wait"}}, tq)
        waiting = await until(env, second, lambda s: s.state == RunState.WAITING_FOR_LEASE)
        assert waiting.lease.position == 1
        assert [h.workflow_id for h in waiting.lease.holders] == [first.id]
        mutations_while_waiting = len(cloud.mutations)
        await reject(first, "phase-2", reason="wrong fix")  # the first rolls back
        first_report = await finished(first)
        st = await until(env, second, at_gate("phase-1"))
        second_diagnose = diagnose_positions(cloud)[-1]
        await reject(second, "phase-1", reason="not needed any more")
        report = await finished(second)
    assert first_report.outcome == RunState.REJECTED
    assert mutations_while_waiting > 0  # the first run had changed things
    # The second run read the world only after the first run's rollback was over.
    undo_positions = [i for i, (name, _) in enumerate(cloud.calls) if name in _COMPENSATIONS]
    assert undo_positions and second_diagnose > max(undo_positions)
    assert st.lease.state == "granted"
    assert report.outcome == RunState.REJECTED
    await keep_history(second, "lease_waited")


async def test_junk_signals_to_the_keeper_are_dropped_and_leases_still_work(time_skipping_env):
    """The keeper is shared by every run on a project: a signal without input, with two
    inputs or with junk must not fail its workflow task (that would stall all leases)."""
    from temporalio.api.enums.v1 import EventType

    from runbook.leases import SIGNAL_RELEASE_LEASE, SIGNAL_REQUEST_LEASE, keeper_id

    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        first = await start(env, {}, tq)
        await until(env, first, at_gate("phase-1"))
        keeper = env.client.get_workflow_handle(keeper_id("netra-staging"))
        for name in (SIGNAL_REQUEST_LEASE, SIGNAL_RELEASE_LEASE):
            await keeper.signal(name)
            await keeper.signal(name, args=[{"workflow_id": 7}, "extra"])
            await keeper.signal(name, {"resources": "not a list"})
        await reject(first, "phase-1")
        await finished(first)
        second = await start(env, {"incident_id": "1278-b"}, tq)
        st = await until(env, second, at_gate("phase-1"))
        await reject(second, "phase-1")
        await finished(second)
    assert st.lease.state == "granted"
    events = [e async for e in keeper.fetch_history_events()]
    assert not any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in events)
