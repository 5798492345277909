"""The audit of one run, as data: what `runbook audit` renders (cli.audit builds it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, computed_field

from cli.diffs import diff_json
from runbook.changes_in_force import ChangesInForce
from runbook.identity_policy import IdentityResolution
from runbook.plan import Plan
from runbook.status import ChangeRecord, RemediationReport


class Decision(BaseModel):
    at: datetime
    event_id: int = 0
    action: str  # approve | reject | abort | decide | pause | resume | cancel-request | terminate
    via: str  # update | signal | api
    gate: str | None = None
    actor: str | None = None  # the person named in the payload
    identity: str = ""  # the client identity the server recorded
    comment: str = ""
    plan_digest: str | None = None
    result: str = ""  # accepted / refused / received
    # identity-1: "verified by <issuer> via cli|slack|api (envelope …)" or claimed.
    proof: str = ""


class ActivityRecord(BaseModel):
    event_id: int = 0  # the ActivityTaskScheduled event
    activity_id: str
    activity_type: str
    summary: str = ""
    scheduled_at: datetime
    closed_at: datetime | None = None
    attempts: int = 0
    duration_s: float | None = None
    outcome: str = "running"  # completed | failed | timed out | canceled | running
    error: str | None = None
    input: Any = None
    result: Any = None


class TimerRecord(BaseModel):
    event_id: int = 0  # TimerStarted
    end_event_id: int = 0
    timer_id: str
    summary: str = ""
    started_at: datetime
    duration_s: float
    outcome: str = "pending"  # fired | canceled | pending
    ended_at: datetime | None = None


class Notification(BaseModel):
    at: datetime
    event_id: int = 0
    level: str
    recipient: str
    subject: str
    outcome: str
    channel: str = ""  # per-channel notifications (runs since safety-1)
    attempts: int = 0
    error: str | None = None


class StateChange(BaseModel):
    at: datetime
    event_id: int = 0
    state: str | None = None
    phase: int | None = None


class PhaseAudit(BaseModel):
    number: int
    title: str = ""
    status: str = ""
    budget_s: int | None = None
    actual_s: float | None = None
    breached: bool | None = None
    source: str = ""


class TimelineEntry(BaseModel):
    at: datetime
    event_id: int = 0  # orders entries that share a timestamp as history does
    kind: str
    text: str


class ChangeDiff(BaseModel):
    """One change as the fields it touched; the whole before/after stay in ``changes_*``."""

    step_id: str
    resource: str
    outcome: str  # applied | reverted | left_in_place | outcome_unknown
    # {"path": "env.DATABASE_POOL_SIZE", "change": "changed|added|removed", "before", "after"}
    # (cli/diffs.py diff_json: the side a field is absent from is left out).
    fields: list[dict[str, Any]] = Field(default_factory=list)


class AuditReport(BaseModel):
    workflow_id: str
    run_id: str = ""
    workflow_type: str = ""
    task_queue: str = ""
    generated_at: datetime
    source: str  # "live history" | "history file <path>"
    started_at: datetime | None = None
    started_by: str = ""
    requested_by: str = ""
    # The identity policy the run resolved at start (None: before identity-1, claimed).
    identity: IdentityResolution | None = None
    static_summary: str = ""
    request: Any = None
    request_problems: list[str] = Field(default_factory=list)
    plan: Plan | None = None
    plan_note: str = ""
    decisions: list[Decision] = Field(default_factory=list)
    activities: list[ActivityRecord] = Field(default_factory=list)
    notifications: list[Notification] = Field(default_factory=list)
    timers: list[TimerRecord] = Field(default_factory=list)
    state_changes: list[StateChange] = Field(default_factory=list)
    phases: list[PhaseAudit] = Field(default_factory=list)
    changes_applied: list[ChangeRecord] = Field(default_factory=list)
    changes_reverted: list[ChangeRecord] = Field(default_factory=list)
    changes_left_in_place: list[ChangeRecord] = Field(default_factory=list)
    changes_outcome_unknown: list[ChangeRecord] = Field(default_factory=list)
    changes_source: str = ""
    outcome: str = "RUNNING"
    outcome_detail: str = ""
    # How Temporal closed it: COMPLETED, FAILED, CANCELED, TERMINATED, TIMED_OUT
    closed_as: str = ""
    closed_at: datetime | None = None
    report: RemediationReport | None = None
    # Set when Temporal closed the run without its rollback (terminated, execution timeout).
    in_force: ChangesInForce | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @computed_field  # in the JSON audit: the fields each change touched, not whole resources
    @property
    def change_diffs(self) -> list[ChangeDiff]:
        return [ChangeDiff(step_id=c.step_id, resource=c.resource, outcome=outcome,
                           fields=diff_json(c.before, c.after))
                for outcome, changes in (("applied", self.changes_applied),
                                         ("reverted", self.changes_reverted),
                                         ("left_in_place", self.changes_left_in_place),
                                         ("outcome_unknown", self.changes_outcome_unknown))
                for c in changes]
