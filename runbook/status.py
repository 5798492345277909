"""What the ``status`` query returns and what a run ends with (``RemediationReport``)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from runbook.iac_followup import IacFollowUp
from runbook.identity_policy import IdentityResolution, VerifiedMessage
from runbook.leases import LeaseView
from runbook.notifications import ChannelFailure
from runbook.plan import DriftRow, Plan


class RunState(str, Enum):
    PLANNING = "PLANNING"
    WAITING_FOR_LEASE = "WAITING_FOR_LEASE"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    # A step failed after its retries and the phase asks: a decision gate waits for
    # retry, skip or rollback (``RunStatus.pending_gate``, kind "decision").
    AWAITING_DECISION = "AWAITING_DECISION"
    RUNNING = "RUNNING"
    VALIDATING = "VALIDATING"
    ROLLING_BACK = "ROLLING_BACK"
    SUCCEEDED = "SUCCEEDED"
    ROLLED_BACK = "ROLLED_BACK"
    ABORTED = "ABORTED"
    REJECTED = "REJECTED"
    TIMED_OUT = "TIMED_OUT"
    FAILED = "FAILED"
    # Another run held a lease on its targets (policy refuse, or waited too long):
    # nothing was changed.
    REFUSED = "REFUSED"
    # An operator paused the run: it holds before its next step (never mid-operation)
    # until resumed. Who and why: ``RunStatus.pause``.
    PAUSED = "PAUSED"


TERMINAL_STATES = {RunState.SUCCEEDED, RunState.ROLLED_BACK, RunState.ABORTED,
                   RunState.REJECTED, RunState.TIMED_OUT, RunState.FAILED, RunState.REFUSED}


class StepStatus(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    COMPENSATED = "COMPENSATED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"
    LEFT_IN_PLACE = "LEFT_IN_PLACE"
    SKIPPED = "SKIPPED"


class StepRecord(BaseModel):
    id: str
    phase: int  # 0 = cleanup
    summary: str
    activity: str
    kind: str
    reversible: bool
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    changed: bool | None = None
    # The step sent its change and failed while the operation was still running: whether
    # the change landed is unknown (it may still). Its undo runs all the same.
    outcome_unknown: bool = False
    resource: str = ""
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    detail: str = ""
    error: str | None = None


class Approval(BaseModel):
    gate: str
    approver: str
    at: datetime
    comment: str = ""
    plan_digest: str | None = None
    via: str = "update"  # update | signal
    # identity-1: "verified" when a signed envelope proved the approver (who proved them:
    # ``idp``; sent from ``channel``: cli | slack | api), else "claimed".
    identity: str = "claimed"
    idp: str | None = None
    channel: str | None = None


class IgnoredMessage(BaseModel):
    """A signal that would have been rejected: recorded for the audit, then ignored.

    ``payload`` is a bounded, printable summary of what was sent (never the raw value: a
    binary one made the status query unserialisable)."""

    at: datetime
    signal: str
    payload: str
    reason: str


class FailureDecision(BaseModel):
    """What an operator decided at a decision gate (or ``timeout`` when nobody did)."""

    decision: str  # retry | skip | rollback | timeout
    gate: str = ""
    by: str
    reason: str = ""
    at: datetime


class GateRecord(BaseModel):
    id: str
    title: str
    status: str = "PENDING"  # PENDING | OPEN | APPROVED | REJECTED | TIMED_OUT | SKIPPED | DECIDED
    # approval: a phase or cleanup gate; decision: opened when a step failed after its
    # retries under ``on_step_failure: ask`` (workflows/failure_decisions.py).
    kind: str = "approval"
    # The phase the gate opens (0: cleanup), so a view can show the plan rows it releases.
    phase: int | None = None
    # The requester may not approve (two-person rule); shown with who may approve.
    two_person_rule: bool = False
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    min_approvals: int = 1
    approvers_allowed: list[str] = Field(default_factory=list)
    approvals: list[Approval] = Field(default_factory=list)
    remind_at: datetime | None = None
    escalate_at: datetime | None = None
    timeout_at: datetime | None = None
    rejected_by: str | None = None
    reject_reason: str | None = None
    # Decision gates: the failed step, its error and attempts, the options offered, the
    # steps whose changes are in force while it waits, and what was decided.
    step_id: str | None = None
    failure: str | None = None
    attempts: int | None = None
    options: list[str] = Field(default_factory=list)
    in_force: list[str] = Field(default_factory=list)
    decision: FailureDecision | None = None
    # Phase gates: what changed since the plan was made (runbook/drift.py). A drift
    # rebuilt the plan and its digest; approvals carrying the old digest are refused.
    drift: list[DriftRow] = Field(default_factory=list)
    # Set when the re-diagnosis before the gate could not run (the plan was kept).
    drift_check_error: str | None = None
    # Why the quorum differs from the policy (a verified run without a verified requester).
    quorum_note: str | None = None


class Escalation(BaseModel):
    at: datetime
    level: str  # reminder | escalation | breach | hard_limit | outcome
    recipient: str
    subject: str
    phase: int | None = None
    gate: str | None = None
    delivered: list[str] = Field(default_factory=list)
    # Channels that still failed after Temporal's retries (per recipient and channel);
    # ``pending`` while the deliveries are still being attempted.
    failed: list[ChannelFailure] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)


class RollbackEntry(BaseModel):
    at: datetime
    step_id: str
    # compensated | compensation_failed | left_in_place | nothing_to_undo | waiting (an
    # undo still running long: what it waits on and when it gives up)
    action: str
    detail: str = ""


class PauseRecord(BaseModel):
    """One pause of a run, from request to resume. ``held_at``: when the run actually
    stopped (after the step in flight finished); ``held_before``: what it waits to do."""

    by: str
    reason: str = ""
    requested_at: datetime
    held_at: datetime | None = None
    held_before: str | None = None
    # Budgets and gate deadlines froze while held (request ``pause.freeze_deadlines``).
    freeze_deadlines: bool = False
    resumed_at: datetime | None = None
    resumed_by: str | None = None
    resume_reason: str | None = None


class PhaseRecord(BaseModel):
    number: int
    title: str
    owner: str
    budget_s: int
    hard_limit_s: int
    escalation: list[str]
    success_criteria: list[str] = Field(default_factory=list)
    status: str = "PENDING"  # PENDING | RUNNING | SUCCEEDED | FAILED | ROLLED_BACK
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    budget_at: datetime | None = None
    hard_limit_at: datetime | None = None
    budget_breached: bool = False
    # Steps still running when the hard limit fired (they were cancelled).
    stuck_steps: list[str] = Field(default_factory=list)
    soak_clean_since: datetime | None = None
    soak_samples: int = 0
    soak_restarts: int = 0
    # Soak window length (for progress views); 0 when the phase has no soak.
    soak_window_s: int = 0
    # Steps skipped by an operator's decision after they failed: "<step> by <who>: <why>".
    # The phase's success criteria are not proven for them.
    skipped_steps: list[str] = Field(default_factory=list)


class RunStatus(BaseModel):
    incident_id: str
    requested_by: str
    state: RunState
    current_phase: int | None = None
    pending_gate: GateRecord | None = None
    # The run's lease on its targets: granted, queued behind another run, refused.
    lease: LeaseView | None = None
    plan: Plan | None = None
    phases: list[PhaseRecord] = Field(default_factory=list)
    gates: list[GateRecord] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    escalations: list[Escalation] = Field(default_factory=list)
    rollback_log: list[RollbackEntry] = Field(default_factory=list)
    # The current pause (None when not paused) and every pause of the run, for the audit.
    pause: PauseRecord | None = None
    pauses: list[PauseRecord] = Field(default_factory=list)
    # The latest ignored messages (bounded, see workflows/approvals.py) and how many there
    # were in all, so a flood of junk signals cannot grow the status without limit.
    ignored_messages: list[IgnoredMessage] = Field(default_factory=list)
    ignored_messages_total: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome_reason: str = ""
    # identity-1: the identity policy resolved at start (None: claimed, an older run) and
    # the proof of every message accepted with a verified identity.
    identity: IdentityResolution | None = None
    verified_messages: list[VerifiedMessage] = Field(default_factory=list)


class ChangeRecord(BaseModel):
    step_id: str
    resource: str
    summary: str
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)


class PhaseSummary(BaseModel):
    number: int
    title: str
    status: str
    budget_s: int
    duration_s: float | None
    budget_breached: bool
    skipped_steps: list[str] = Field(default_factory=list)


class RemediationReport(BaseModel):
    incident_id: str
    outcome: RunState
    reason: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    plan_digest: str | None = None
    phases: list[PhaseSummary] = Field(default_factory=list)
    approvals: list[Approval] = Field(default_factory=list)
    changes_applied: list[ChangeRecord] = Field(default_factory=list)
    changes_reverted: list[ChangeRecord] = Field(default_factory=list)
    changes_left_in_place: list[ChangeRecord] = Field(default_factory=list)
    # Sent, then the step failed with the operation in flight: may or may not have landed.
    changes_outcome_unknown: list[ChangeRecord] = Field(default_factory=list)
    escalations: list[Escalation] = Field(default_factory=list)
    revisions_left_in_place: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    # For every change still in force: the Terraform edit that keeps it on the next apply.
    iac_followup: list[IacFollowUp] = Field(default_factory=list)
    # Operators' answers at decision gates, and the run's pauses.
    decisions: list[FailureDecision] = Field(default_factory=list)
    pauses: list[PauseRecord] = Field(default_factory=list)
    identity: IdentityResolution | None = None
    verified_messages: list[VerifiedMessage] = Field(default_factory=list)
