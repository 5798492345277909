"""What a closed remediation run left in force, derived from its event history alone.

A run that is terminated (or hits its workflow execution timeout) runs no more workflow
code: its saga never compensates and no report says what it left behind. History still
holds every step's activity, so the changes are rebuilt from it with the workflow's own
conventions: a mutating step's activity id is the step id (workflows/remediation.py
``_run_step``), its compensation's is ``undo-<step id>`` (workflows/saga.py), a step that
changed something completes with ``changed: true`` and its before/after, and one that
failed after issuing its change attaches a ``MutationCheckpoint`` to its failure
(workflows/step_errors.py ``checkpoint_of``). Which step mutates, and how it is undone,
comes from the runbook rebuilt from the run's request (a pure function of it).

Pure: no I/O. The CLI (status, audit) and the ``read_changes_in_force`` activity use it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from runbook.payloads import decode, first
from runbook.activity_io import UNDO_PREFIX, checkpoint_in
from runbook.default_runbook import build_runbook
from runbook.definition import Runbook, StepSpec
from runbook.request import describe_problems, request_problems

# How Temporal closed a run without letting its code roll back: what `runbook rollback` is for.
ABANDONED = ("TERMINATED", "TIMED_OUT")

# The history event that closes a run -> the execution status it leaves (as Temporal names it).
_CLOSE_EVENTS = {
    "workflow_execution_completed_event_attributes": "COMPLETED",
    "workflow_execution_failed_event_attributes": "FAILED",
    "workflow_execution_timed_out_event_attributes": "TIMED_OUT",
    "workflow_execution_terminated_event_attributes": "TERMINATED",
    "workflow_execution_canceled_event_attributes": "CANCELED",
    "workflow_execution_continued_as_new_event_attributes": "CONTINUED_AS_NEW",
}
# Step parameters naming what a step changes, most specific first (runbook/activity_io.py).
_RESOURCE_PARAMS = ("connector", "instance", "service", "health_check", "backend_service",
                    "certificate", "display_name")


class InForceChange(BaseModel):
    step_id: str
    activity: str
    resource: str
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)  # {} when the step failed mid-change
    summary: str = ""
    # False: no compensation exists (e.g. connectors only grow); a rollback leaves it.
    reversible: bool = True
    evidence: str = ""  # why it is known to be in force


class InFlightStep(BaseModel):
    """A mutating activity (or its undo) with no close event: its effect is unknown."""

    step_id: str
    activity: str
    resource: str  # what the step may have changed, from its parameters
    summary: str = ""
    scheduled_at: datetime | None = None
    undo: bool = False  # an interrupted compensation (its change is also in ``changes``)


class ChangesInForce(BaseModel):
    workflow_id: str
    run_id: str = ""
    workflow_type: str = ""
    closed_as: str = "RUNNING"  # COMPLETED | FAILED | CANCELED | TERMINATED | TIMED_OUT | ...
    closed_at: datetime | None = None
    closed_by: str = ""  # the identity that terminated it
    close_reason: str = ""
    request: dict[str, Any] = Field(default_factory=dict)
    changes: list[InForceChange] = Field(default_factory=list)
    in_flight: list[InFlightStep] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)

    @property
    def abandoned(self) -> bool:
        """Closed by Temporal without the run's own rollback (terminate, execution timeout)."""
        return self.closed_as in ABANDONED


def _decoded(payloads: Payloads) -> list[Any]:
    return [decode(p) for p in payloads.payloads]


def _failure_details(f: Failure | None) -> list[Any]:
    """Details anywhere in the failure chain, and a timeout's last heartbeat details."""
    out: list[Any] = []
    while f is not None:
        if f.HasField("application_failure_info"):
            out += _decoded(f.application_failure_info.details)
        if f.HasField("timeout_failure_info"):
            out += _decoded(f.timeout_failure_info.last_heartbeat_details)
        f = f.cause if f.HasField("cause") else None
    return out


def _resource_of(params: dict[str, Any]) -> str:
    for key in _RESOURCE_PARAMS:
        if params.get(key):
            where = ", ".join(f"{k} {params[k]}" for k in ("project", "region") if params.get(k))
            return f"{key} {params[key]}" + (f" ({where})" if where else "")
    return ""


class _Activity:
    def __init__(self, ev: HistoryEvent) -> None:
        at = ev.activity_task_scheduled_event_attributes
        self.activity_id, self.activity_type = at.activity_id, at.activity_type.name
        self.scheduled_at = ev.event_time.ToDatetime(tzinfo=timezone.utc)
        self.closed: str | None = None  # completed | failed
        self.result: Any = None
        self.details: list[Any] = []


def _walk(history: WorkflowHistory, out: ChangesInForce) -> list[_Activity]:
    """Fill the run's facts into ``out``; return its activities in scheduling order."""
    acts: dict[int, _Activity] = {}
    for ev in history.events:
        kind = ev.WhichOneof("attributes") or ""
        at = getattr(ev, kind, None)
        if kind == "workflow_execution_started_event_attributes":
            out.workflow_type = at.workflow_type.name
            out.run_id = at.original_execution_run_id or at.first_execution_run_id
            request = first(at.input)
            out.request = request if isinstance(request, dict) else {}
            if request is not None and not isinstance(request, dict):
                out.problems.append("the run's input is not a JSON object")
        elif kind == "activity_task_scheduled_event_attributes":
            acts[ev.event_id] = _Activity(ev)
        elif kind == "activity_task_completed_event_attributes":
            a = acts.get(at.scheduled_event_id)
            if a:
                a.closed, a.result = "completed", first(at.result)
        elif kind in ("activity_task_failed_event_attributes", "activity_task_timed_out_event_attributes"):
            a = acts.get(at.scheduled_event_id)
            if a:
                a.closed, a.details = "failed", _failure_details(at.failure)
        elif kind == "activity_task_canceled_event_attributes":
            a = acts.get(at.scheduled_event_id)
            if a:
                a.closed, a.details = "failed", _decoded(at.details)
        elif kind in _CLOSE_EVENTS:
            out.closed_as = _CLOSE_EVENTS[kind]
            out.closed_at = ev.event_time.ToDatetime(tzinfo=timezone.utc)
            if kind == "workflow_execution_terminated_event_attributes":
                out.closed_by, out.close_reason = at.identity, at.reason
    return list(acts.values())


def _change(step: StepSpec, a: _Activity) -> InForceChange | None:
    reversible = step.reversible and step.compensation is not None
    if a.closed == "completed":
        res = a.result if isinstance(a.result, dict) else {}
        if res.get("changed") is not True:
            return None
        return InForceChange(step_id=step.id, activity=step.activity, summary=step.summary,
                             resource=str(res.get("resource") or _resource_of(step.params)),
                             before=res.get("before") or {}, after=res.get("after") or {},
                             reversible=reversible, evidence="completed with changed=true")
    checkpoint = checkpoint_in(a.details)
    if checkpoint is None:
        return None
    return InForceChange(step_id=step.id, activity=step.activity, summary=step.summary,
                         resource=checkpoint.resource, before=checkpoint.before,
                         reversible=reversible, evidence="failed after issuing its change")


def changes_in_force(history: WorkflowHistory, book: Runbook | None = None) -> ChangesInForce:
    """Every mutating step of the run whose change was applied and not undone, in the order
    the run applied them, and every mutating step still in flight when the history ends.

    ``book`` defaults to the runbook rebuilt from the run's request."""
    out = ChangesInForce(workflow_id=history.workflow_id)
    activities = _walk(history, out)
    if book is None:
        req, problems = request_problems(out.request)
        if req is None:
            # An invalid request fails the run before any step: nothing can be in force.
            out.problems.append(f"the run's request is not valid ({describe_problems(problems)}); "
                                "no step could have run")
            return out
        book = build_runbook(req)
    undone = {a.activity_id.removeprefix(UNDO_PREFIX) for a in activities
              if a.activity_id.startswith(UNDO_PREFIX) and a.closed == "completed"}
    for a in activities:
        undo = a.activity_id.startswith(UNDO_PREFIX)
        step_id = a.activity_id.removeprefix(UNDO_PREFIX)
        try:
            step = book.step(step_id)
        except KeyError:  # diagnose, notifications: not steps of the runbook
            continue
        if step.kind != "mutate":
            continue
        if a.closed is None and (undo or step_id not in undone):
            out.in_flight.append(InFlightStep(step_id=step.id, activity=a.activity_type,
                                              resource=_resource_of(step.params),
                                              summary=step.summary, scheduled_at=a.scheduled_at,
                                              undo=undo))
        elif not undo and step_id not in undone:
            change = _change(step, a)
            if change is not None:
                out.changes.append(change)
    return out


def abandoned_run(history: WorkflowHistory) -> ChangesInForce | None:
    """The changes in force of a run Temporal closed without its rollback, else None."""
    cif = changes_in_force(history)
    return cif if cif.abandoned else None
