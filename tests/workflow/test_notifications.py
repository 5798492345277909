"""Notifications arrive or are seen failing: per recipient and channel, retried by Temporal."""

from __future__ import annotations

import logging

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from runbook.messages import SIGNAL_ABORT
from runbook.status import RunState
from tests.workflow.doubles import FakeCloud
from workflows.current_details import render_current_details
from tests.workflow.harness import (
    FAST_SOAK,
    GATES,
    approve_when_pending,
    finished,
    keep_history,
    new_queue,
    start,
    until,
    worker_for,
)

ROUTES = {"routes": {"Development Team Lead": ["slack-dev", "log"],
                     "Engineering Manager": ["pd-eng", "slack-dev"]},
          "default": ["log"]}


async def test_a_dead_channel_is_retried_then_shown_failed_per_recipient(time_skipping_env, caplog):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    # The Slack webhook is down for the first message (phase-2's opening, announced to the
    # Development Team Lead): every retry fails; then it recovers for the reminder.
    down = ApplicationError("HTTP 503 from slack", type="ChannelUnavailable")
    cloud.failures["notify:slack-dev"] = [down] * 4
    caplog.set_level(logging.WARNING)
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"notifications": ROUTES}, tq)
        await approve_when_pending(env, handle, "phase-1")
        st = await until(env, handle, lambda s: any(
            e.level == "escalation" and not e.pending for e in s.escalations), skip_s=60)
        opened = next(e for e in st.escalations if e.level == "approval" and e.gate == "phase-2")
        assert opened.recipient == "Development Team Lead"
        assert opened.delivered == ["log"] and opened.pending == []
        [failure] = opened.failed
        assert (failure.recipient, failure.channel, failure.attempts) == (
            "Development Team Lead", "slack-dev", 4)
        assert "HTTP 503 from slack" in failure.error
        reminder = next(e for e in st.escalations if e.level == "reminder")
        assert sorted(reminder.delivered) == ["log", "slack-dev"] and not reminder.failed
        escalation = next(e for e in st.escalations if e.level == "escalation")
        assert sorted(escalation.delivered) == ["pd-eng", "slack-dev"] and not escalation.failed
        # The failure is in the UI's Current Details too.
        details = render_current_details(st)
        assert "Notification FAILED" in details and "slack-dev" in details

        # Deciding the gate resolves what was paged about it, under the same dedup key.
        await approve_when_pending(env, handle, "phase-2", approver="bob")
        await until(env, handle, lambda s: any(e.level == "resolve" and not e.pending
                                               for e in s.escalations))
        await handle.signal(SIGNAL_ABORT, {"by": "carol", "reason": "enough"})
        report = await finished(handle)

    assert report.outcome == RunState.ABORTED
    assert any(f.channel == "slack-dev" for e in report.escalations for f in e.failed)
    paged = [n for n in cloud.notifications if getattr(n, "channel", None) == "pd-eng"]
    assert [n.level for n in paged][:2] == ["escalation", "resolve"]
    assert paged[0].dedup_key == paged[1].dedup_key == f"{handle.id}/phase-2"
    assert paged[0].approve_command.startswith(f"runbook approve {handle.id} --gate phase-2")
    # The run's own log says so at WARNING.
    assert any(r.levelno == logging.WARNING and "slack-dev" in r.getMessage()
               and "failed after 4 attempt(s)" in r.getMessage() for r in caplog.records)
    await keep_history(handle, "notification_failed")


async def test_an_unknown_channel_is_not_retried(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["notify:nowhere"] = [ApplicationError(
        "channel 'nowhere' is not configured", type="ChannelNotConfigured", non_retryable=True)]
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"notifications": {"default": ["nowhere"]},
                                   "approval": {"default": {"remind_after_s": 60,
                                                            "escalate_after_s": 120,
                                                            "timeout_s": 180}}}, tq)
        st = await until(env, handle, lambda s: any(e.failed for e in s.escalations), skip_s=30)
        await handle.signal(SIGNAL_ABORT, {"by": "carol", "reason": "test over"})
        await finished(handle)
    [failure] = next(e for e in st.escalations if e.failed).failed
    assert failure.attempts == 1 and "not configured" in failure.error
    # The escalation went on while the channel failed: the gate did not wait for it.
    assert st.state == RunState.AWAITING_APPROVAL


async def test_a_late_cancel_does_not_roll_back_a_finished_remediation(time_skipping_env):
    """The run has SUCCEEDED and released its lease; its outcome notice is still being
    retried when someone cancels it. The cancel changes nothing: no rollback (another run
    may hold the targets by now), the run completes SUCCEEDED."""
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    cloud.failures["notify:slow"] = [ApplicationError("HTTP 503", type="ChannelUnavailable")] * 2
    request = {"requested_by": "carol", "soak": FAST_SOAK,
               "notifications": {"routes": {"carol": ["slow"]}, "default": ["log"]}}
    async with worker_for(env, cloud, tq):
        handle = await start(env, request, tq)
        for gate in GATES:
            await approve_when_pending(env, handle, gate)
        await until(env, handle, lambda s: s.state == RunState.SUCCEEDED, skip_s=0)
        await handle.cancel()
        report = await finished(handle)  # also checks: Completed, not Canceled
    assert report.outcome == RunState.SUCCEEDED
    assert cloud.compensations() == []
    outcome = next(e for e in report.escalations if e.level == "outcome")
    assert outcome.delivered == ["slow"]  # delivered on the third attempt


async def test_a_request_with_the_old_webhook_list_is_refused(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"notifications": [{"kind": "webhook", "url": "https://h/x"}]}, tq)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    assert info.value.cause.type == "InvalidRequest"
    assert "notifications" in info.value.cause.message and "secrets" in info.value.cause.message
    assert cloud.calls == []
