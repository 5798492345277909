"""The workflow side of the runbook metrics: runs by outcome, gate waits, rollbacks,
budget alarms (observability/metrics.py has the names).

Recorded through ``workflow.metric_meter()``, which records nothing while a history is
replayed: a run moved to another worker, or evicted from the cache, does not count its
past again. Counting is at least once, not exactly once: a worker that dies after
recording in a workflow task but before completing it leaves that task to be retried
(and recorded) elsewhere. Each call site in the workflow is one line; label values come
from the runbook definition and the run's state, never from ids or free text.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from observability import metrics as m
    from runbook.status import GateRecord, RunState

# What made the run roll back, from the state it rolls back to.
ROLLBACK_REASON = {RunState.ROLLED_BACK: "failed", RunState.ABORTED: "aborted",
                   RunState.REJECTED: "rejected", RunState.TIMED_OUT: "timed_out"}
# Budget alarms (workflows/budget.py levels) as the ``kind`` label.
BUDGET_KIND = {"breach": "budget", "escalation": "escalation", "hard_limit": "hard_limit"}


def run_started() -> None:
    workflow.metric_meter().create_counter(
        m.RUNS_STARTED, "Remediation runs started").add(1)


def run_finished(state: RunState) -> None:
    workflow.metric_meter().create_counter(
        m.RUNS_FINISHED, "Remediation runs by final state").add(1, {m.OUTCOME: state.value})


def gate_resolved(g: GateRecord) -> None:
    """From the gate's opening to its resolution (the decision, timeout or abort)."""
    if g.opened_at is None:
        return
    closed: datetime = g.closed_at or workflow.now()
    workflow.metric_meter().create_histogram_timedelta(
        m.GATE_WAIT, "Time from a gate's opening to its resolution").record(
        max(closed - g.opened_at, timedelta(0)), {m.GATE: gate_label(g),
                                                     m.RESOLUTION: resolution(g)})


def gate_label(g: GateRecord) -> str:
    # A decision gate's id counts its reopenings (decide-<step>-2): label it by its step.
    return f"decide-{g.step_id}" if g.kind == "decision" and g.step_id else g.id


def resolution(g: GateRecord) -> str:
    if g.status == "DECIDED" and g.decision is not None:
        return g.decision.decision  # retry | skip | rollback
    # Still OPEN here: the run's abort or cancellation ended the wait.
    return "aborted" if g.status == "OPEN" else g.status.lower()


def rollback_started(end_state: RunState, phase: int | None) -> None:
    workflow.metric_meter().create_counter(
        m.ROLLBACKS, "Rollbacks by cause and the phase they started in").add(
        1, {m.REASON: ROLLBACK_REASON.get(end_state, end_state.value.lower()),
            m.PHASE: str(phase or 0)})


def budget_alarm(phase: int, level: str) -> None:
    workflow.metric_meter().create_counter(
        m.BUDGET_BREACHES, "Phase budget alarms: budget passed, escalation, hard limit").add(
        1, {m.PHASE: str(phase), m.KIND: BUDGET_KIND.get(level, level)})
