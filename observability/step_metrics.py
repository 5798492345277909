"""The activity side of the runbook metrics: every step attempt's duration and outcome
(an activity inbound interceptor), and failed notification sends.

Recorded through ``activity.metric_meter()``, so they reach the worker's Prometheus
endpoint beside the SDK's own metrics (observability/metrics.py has the names). The
meter already carries namespace, task_queue and activity_type; the labels here are the
runbook's: which step, which activity, how the attempt ended.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from observability import metrics as m
from observability.logs import step_of

SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
# The step label of activities that are not steps (diagnose, notifications, leases): their
# activity id is the SDK's sequence number, which grows with the history (logs.step_of).
NO_STEP = "none"


class StepMetricsInterceptor(Interceptor):
    """Add to the worker's interceptors (worker.py ``build_worker``)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _RecordStep(next)


class _RecordStep(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        # Monotonic: a step's duration must not jump with the wall clock.
        started = time.monotonic()
        outcome = FAILED
        try:
            result = await super().execute_activity(input)
            outcome = SUCCEEDED
            return result
        except asyncio.CancelledError:
            outcome = CANCELLED
            raise
        finally:
            record_attempt(timedelta(seconds=time.monotonic() - started), outcome)


def record_attempt(duration: timedelta, outcome: str) -> None:
    """One attempt of the current activity: its duration and how it ended."""
    info = activity.info()
    labels = {m.STEP: step_of(info.activity_id) or NO_STEP, m.ACTIVITY: info.activity_type,
              m.OUTCOME: outcome}
    meter = activity.metric_meter()
    meter.create_histogram_timedelta(
        m.STEP_DURATION, "Duration of one activity attempt (a runbook step, its undo, or "
        "a supporting read or notification)").record(duration, labels)
    meter.create_counter(m.STEP_ATTEMPTS, "Activity attempts by step and outcome").add(1, labels)


def record_notification_failure(channel_kind: str) -> None:
    """A notification send that failed (one attempt), by channel kind (slack, webhook,
    pagerduty, ...). Never the channel's URL or message: both may hold secrets."""
    activity.metric_meter().create_counter(
        m.NOTIFICATION_FAILURES, "Failed notification sends by channel kind").add(
        1, {m.CHANNEL_KIND: channel_kind})
