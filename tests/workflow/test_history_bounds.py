"""History bounds: days at a gate and a soak that restarts many times.

Temporal terminates a run at 51,200 history events (or 50 MB), with nothing rolled back,
and warns from 10,240. These tests measure event counts under time skipping and check
that the history and the status query's answer stay bounded:

- a gate costs a fixed number of events however long it waits: its reminder, escalation
  and timeout each fire once (workflows/gates.py), so days of waiting add nothing;
- a soak sample costs a fixed number of events, and a soak takes at most
  PLANNED_SOAK_SAMPLES samples at its planned cadence (MAX_SOAK_SAMPLES at worst,
  workflows/soak.py): the measured cost per sample times those caps, plus the rest of
  the run, stays under the warning and far under the limit.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from runbook import activity_names as act
from runbook.status import RunState
from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import (
    FAST_SOAK,
    GATES,
    approve_when_pending,
    at_gate,
    finished,
    keep_history,
    new_queue,
    start,
    status,
    until,
)
from tests.workflow.harness import worker_for
from workflows.soak import MAX_SOAK_SAMPLES, PLANNED_SOAK_SAMPLES, SOAK_SAMPLE_BOUND_PATCH

EVENT_LIMIT = 51_200
EVENT_WARNING = 10_240
STATUS_LIMIT = 64 * 1024
DAY = 24 * 60 * 60


async def _events(handle: WorkflowHandle) -> list:
    return list((await handle.fetch_history()).events)


@pytest.mark.faults  # a long proof: CI runs it with -m faults
async def test_days_at_a_gate_add_no_history(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    request = {"requested_by": "carol", "soak": FAST_SOAK, "approval": {"gates": {
        "phase-1": {"remind_after_s": 15 * 60, "escalate_after_s": 30 * 60, "timeout_s": 7 * DAY}}}}
    async with worker_for(env, cloud, tq):
        handle = await start(env, request, tq)
        await until(env, handle, at_gate("phase-1"))
        at_gate_events = len(await _events(handle))

        await env.sleep(timedelta(days=1))  # reminder and escalation are both past
        after_one_day = len(await _events(handle))
        await env.sleep(timedelta(days=4))
        after_five_days = len(await _events(handle))
        st = await status(handle)
        assert st.state == RunState.AWAITING_APPROVAL and st.pending_gate.id == "phase-1"
        gate_notices = [e.level for e in st.escalations if e.gate == "phase-1"]
        # The gate's opening is announced (identity-1), then reminded and escalated.
        assert gate_notices == ["approval", "reminder", "escalation"]
        # The reminder and escalation cost events once; the four days after cost none.
        assert after_one_day > at_gate_events
        assert after_five_days == after_one_day
        assert len(st.model_dump_json()) < STATUS_LIMIT

        for gate in GATES:
            await approve_when_pending(env, handle, gate, approver="alice")
        report = await finished(handle)
    assert report.outcome == RunState.SUCCEEDED
    total = len(await _events(handle))
    # A whole run with five days at a gate: a few hundred events.
    assert total < EVENT_WARNING // 10, total


async def test_a_soak_restarting_fifty_times_stays_bounded(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.soak_503s = [1] * 50
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"requested_by": "carol", "soak": FAST_SOAK}, tq)
        for gate in GATES:
            await approve_when_pending(env, handle, gate, approver="alice", skip_s=30)
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.SUCCEEDED
    phase_4 = st.phases[3]
    assert phase_4.soak_restarts == 50 and phase_4.soak_samples > 50
    assert len(st.model_dump_json()) < STATUS_LIMIT

    events = await _events(handle)
    soak_scheduled = [e.event_id for e in events
                      if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                      and e.activity_task_scheduled_event_attributes.activity_type.name
                      == act.SAMPLE_ERROR_RATE]
    assert len(soak_scheduled) == phase_4.soak_samples
    # Events from one sample's scheduling to the next: the cost of a sample.
    per_sample = (soak_scheduled[-1] - soak_scheduled[0]) / (len(soak_scheduled) - 1)
    rest = len(events) - (soak_scheduled[-1] - soak_scheduled[0])
    assert per_sample <= 12, per_sample
    # The soak's caps, at the measured cost, keep every run inside the limits.
    assert rest + per_sample * PLANNED_SOAK_SAMPLES < EVENT_WARNING, (rest, per_sample)
    assert rest + per_sample * MAX_SOAK_SAMPLES < EVENT_LIMIT // 2, (rest, per_sample)


async def test_a_long_hard_limit_stretches_the_sampling_interval(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    # 30 s samples under a 20 h hard limit would be 2,400 samples: stretched to 144 s.
    request = {"soak": {"window_s": 1440, "sample_every_s": 30, "requests_per_sample": 10},
               "budgets": {"phase_4_s": 36_000, "hard_limit_factor": 2.0}}
    async with worker_for(env, cloud, tq):
        handle = await start(env, request, tq)
        for gate in GATES:
            await approve_when_pending(env, handle, gate, approver="alice", skip_s=60)
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.SUCCEEDED
    soak = next(s for s in st.steps if s.id == "soak")
    assert "sampled every 144s, not 30s" in soak.detail
    assert st.phases[3].soak_samples == 1440 // 144 + 1
    markers = [e for e in await _events(handle)
               if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert any(SOAK_SAMPLE_BOUND_PATCH.encode() in
               e.marker_recorded_event_attributes.SerializeToString() for e in markers)
    await keep_history(handle, "soak_stretched")  # replays against the current code
