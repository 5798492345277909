"""Prometheus metrics: the SDK's own and the runbook's, on one endpoint.

The runbook's metrics are recorded through the SDK's meters (``workflow.metric_meter()``
in workflows/run_metrics.py, ``activity.metric_meter()`` in observability/step_metrics.py),
so the worker's one Prometheus endpoint serves both. The names and label keys below are
shared by the recording code, the Grafana dashboard
(deploy/observability/grafana/dashboards/runbook.json) and its test.

Naming (Prometheus conventions, applied by the SDK's exporter): counters end in
``_total``, durations are histograms in seconds ending in ``_seconds``. Label values are
bounded: outcomes, gate and step ids of the runbook definition, activity types, channel
kinds, never workflow ids or free text.

Runbook metrics as exported:

- ``remediation_runs_started_total`` (no runbook label): runs that began.
- ``remediation_runs_finished_total{outcome}``: runs by final state (SUCCEEDED, ROLLED_BACK,
  FAILED, REJECTED, TIMED_OUT, ABORTED, REFUSED).
- ``remediation_gate_wait_seconds{gate,resolution}``: gate open to its resolution
  (approved, rejected, timed_out, aborted; a decision gate's retry, skip, rollback).
- ``remediation_rollbacks_total{reason,phase}``: rollbacks started, by what caused them.
- ``remediation_budget_breaches_total{phase,kind}``: budget, escalation and hard-limit alarms.
- ``remediation_step_duration_seconds{step,activity,outcome}``: one activity attempt.
- ``remediation_step_attempts_total{step,activity,outcome}``: activity attempts.
- ``remediation_notification_failures_total{channel_kind}``: failed notification sends.
"""

from __future__ import annotations

import logging

from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from observability import bind_address

ENV_METRICS_BIND = "REMEDIATION_METRICS_BIND"

# Names as given to the SDK's meters (the exporter appends _total / _seconds).
RUNS_STARTED = "remediation_runs_started"
RUNS_FINISHED = "remediation_runs_finished"
GATE_WAIT = "remediation_gate_wait"
ROLLBACKS = "remediation_rollbacks"
BUDGET_BREACHES = "remediation_budget_breaches"
STEP_DURATION = "remediation_step_duration"
STEP_ATTEMPTS = "remediation_step_attempts"
NOTIFICATION_FAILURES = "remediation_notification_failures"

# Label keys.
OUTCOME = "outcome"
GATE = "gate"
RESOLUTION = "resolution"
REASON = "reason"
PHASE = "phase"
KIND = "kind"
STEP = "step"
ACTIVITY = "activity"
CHANNEL_KIND = "channel_kind"

# The names Prometheus shows, with their label keys: what the dashboard may query.
EXPORTED: dict[str, tuple[str, ...]] = {
    f"{RUNS_STARTED}_total": (),
    f"{RUNS_FINISHED}_total": (OUTCOME,),
    f"{GATE_WAIT}_seconds": (GATE, RESOLUTION),
    f"{ROLLBACKS}_total": (REASON, PHASE),
    f"{BUDGET_BREACHES}_total": (PHASE, KIND),
    f"{STEP_DURATION}_seconds": (STEP, ACTIVITY, OUTCOME),
    f"{STEP_ATTEMPTS}_total": (STEP, ACTIVITY, OUTCOME),
    f"{NOTIFICATION_FAILURES}_total": (CHANNEL_KIND,),
}

# SDK metrics the dashboard shows that the SDK exports only once the event first happens
# (a poll or workflow task failing, a cache miss): exported name -> the SDK core's name.
SDK_METRICS_AFTER_FIRST_EVENT = {
    "temporal_long_request_failure_total": "long_request_failure",
    "temporal_workflow_task_execution_failed_total": "workflow_task_execution_failed",
    "temporal_sticky_cache_miss_total": "sticky_cache_miss",
    "temporal_sticky_cache_total_forced_eviction_total": "sticky_cache_total_forced_eviction",
}

# Buckets in seconds. A gate waits for a human: from seconds to its timeout (hours). A
# step runs from a sub-second read to a 20-minute Cloud SQL or rollout operation.
GATE_WAIT_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800)
STEP_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200)
HISTOGRAM_BUCKETS = {GATE_WAIT: GATE_WAIT_BUCKETS, STEP_DURATION: STEP_DURATION_BUCKETS}


def parse_bind(bind: str) -> tuple[str, int]:
    return bind_address.parse_bind(bind, ENV_METRICS_BIND)


def prometheus_config(bind: str) -> PrometheusConfig:
    parse_bind(bind)
    return PrometheusConfig(bind_address=bind.strip(), counters_total_suffix=True,
                            unit_suffix=True, durations_as_seconds=True,
                            histogram_bucket_overrides={name: list(buckets) for name, buckets
                                                        in HISTOGRAM_BUCKETS.items()})


def forwarded_core_logs() -> LoggingConfig:
    """The SDK core's own log lines (e.g. "poll failed" while the server is away) go
    through Python logging, logger ``temporalio.core``, so they come out in the process's
    format (JSON in compose) instead of as plain text on stderr. The SDK's default levels."""
    return LoggingConfig(filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                         forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")))


def prometheus_runtime(bind: str) -> Runtime:
    """A runtime serving ``http://<bind>/metrics``: give it to ``Client.connect``; every
    worker on that client records there (SDK metrics and the runbook's)."""
    config = prometheus_config(bind)
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=config, logging=forwarded_core_logs()))
    except Exception as err:  # the port is taken, or the host is not an address here
        raise ValueError(f"{ENV_METRICS_BIND}={bind!r}: cannot serve metrics there: "
                         f"{err}") from err


def process_runtime(metrics_bind: str = "") -> Runtime:
    """The runtime of a long-running process (worker, approval service): core logs
    forwarded, and metrics at ``metrics_bind`` when given."""
    if metrics_bind:
        return prometheus_runtime(metrics_bind)
    return Runtime(telemetry=TelemetryConfig(logging=forwarded_core_logs()))
