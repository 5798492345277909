"""Payloads of the workflow's updates and signals, and the names of its handlers.

Interface (the UI, the CLI and other tools depend on these names):
- update ``approve_gate`` / signal ``approve``: ``GateApproval``
- update ``reject_gate`` / signal ``reject``: ``GateRejection``
- signal / update ``abort``: ``AbortRequest`` (cancelling the workflow is treated the same)
- update / signal ``decide_failure``: ``FailureDecisionRequest`` (a decision gate's answer)
- update / signal ``pause`` and ``resume``: ``PauseRequest``
- query ``status``: ``runbook.status.RunStatus``

Also how a handler reads them (``parse_message``: exactly one JSON object, every bad field
named) and what is kept of one that is ignored (``summarize_payloads``: bounded, printable).
"""

from __future__ import annotations

import reprlib
from typing import Any, Literal, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runbook.envelope import MAX_ENVELOPE
from runbook.identity import normalize_identity

WORKFLOW_TYPE = "RemediationWorkflow"
PLAN_WORKFLOW_TYPE = "RemediationPlanWorkflow"
# Compensation-only run that undoes what a terminated run left in force (`runbook rollback`).
ROLLBACK_WORKFLOW_TYPE = "RemediationRollbackWorkflow"
DEFAULT_TASK_QUEUE = "remediation"

UPDATE_APPROVE = "approve_gate"
UPDATE_REJECT = "reject_gate"
SIGNAL_APPROVE = "approve"
SIGNAL_REJECT = "reject"
SIGNAL_ABORT = "abort"
# identity-1: abort as an update too, so an abort can carry a verified identity.
UPDATE_ABORT = "abort"
QUERY_STATUS = "status"
UPDATE_DECIDE = "decide_failure"
SIGNAL_DECIDE = "decide_failure"
UPDATE_PAUSE = "pause"
UPDATE_RESUME = "resume"
SIGNAL_PAUSE = "pause"
SIGNAL_RESUME = "resume"

# Search attributes (register them on the server: see README / devstack).
SA_INCIDENT = "RemediationIncident"  # Keyword
SA_PHASE = "RemediationPhase"  # Int
SA_STATE = "RemediationState"  # Keyword


# Bounds on what a message may carry: everything accepted ends up in the status query and
# the report, which must stay small (the query answer and each payload are capped at 2 MB).
MAX_GATE_ID = 64
MAX_TEXT = 2000
MAX_DIGEST = 128


class _Message(BaseModel):
    # strict: a number or a list is not an approver; extra: a typo is not silently dropped.
    model_config = ConfigDict(extra="forbid", strict=True)

    # The approval service's signed proof of who sent this (runbook/envelope.py); required
    # when the run takes verified identities (workflows/identity_checks.py).
    envelope: str | None = Field(default=None, max_length=MAX_ENVELOPE)


def _identity(value: str, info: Any) -> str:
    """The canonical spelling (runbook/identity.py), so the two-person rule and the quorum
    compare people, not spellings."""
    return normalize_identity(value, info.field_name)


class GateApproval(_Message):
    gate: str = Field(max_length=MAX_GATE_ID)
    approver: str
    comment: str = Field(default="", max_length=MAX_TEXT)
    plan_digest: str | None = Field(default=None, max_length=MAX_DIGEST)

    _approver = field_validator("approver")(_identity)


class GateRejection(_Message):
    gate: str = Field(max_length=MAX_GATE_ID)
    approver: str
    reason: str = Field(default="", max_length=MAX_TEXT)

    _approver = field_validator("approver")(_identity)


class AbortRequest(_Message):
    by: str
    reason: str = Field(default="", max_length=MAX_TEXT)

    _by = field_validator("by")(_identity)


# What a decision gate takes (approval/ accepts the same).
Decision = Literal["retry", "skip", "rollback"]


class FailureDecisionRequest(_Message):
    """The answer to a decision gate ``decide-<step>``: retry the failed step, skip it
    (only a step the runbook marks skippable) or roll back."""

    gate: str = Field(max_length=MAX_GATE_ID)
    decision: Decision
    by: str
    reason: str = Field(default="", max_length=MAX_TEXT)

    _by = field_validator("by")(_identity)


class PauseRequest(_Message):
    """Pause (hold before the next step) or resume a run."""

    by: str
    reason: str = Field(default="", max_length=MAX_TEXT)

    _by = field_validator("by")(_identity)


class GateAck(BaseModel):
    """What ``approve_gate`` / ``reject_gate`` return to the caller."""

    gate: str
    accepted: bool
    approvals: int
    required: int
    gate_status: str


class AbortAck(BaseModel):
    """What the ``abort`` update returns: the run is rolling back."""

    accepted: bool
    state: str


# ------------------------------------------------------------ reading a message ----------

EXAMPLES = {
    GateApproval: '{"gate": "phase-1", "approver": "alice"}',
    GateRejection: '{"gate": "phase-1", "approver": "alice", "reason": "..."}',
    AbortRequest: '{"by": "alice", "reason": "..."}',
    FailureDecisionRequest: '{"gate": "decide-configure-backend", "decision": "retry", "by": "alice"}',
    PauseRequest: '{"by": "alice", "reason": "..."}',
}
# Problems listed per refusal; the rest are counted. Keeps a junk payload's refusal short.
_MAX_PROBLEMS = 5
_MAX_REASON = 600

MessageT = TypeVar("MessageT", bound=BaseModel)


def parse_message(model: type[MessageT], payloads: Sequence[Any]) -> MessageT:
    """The one message a signal or update carries, validated.

    ``payloads`` are the handler's positional arguments: a message sent with no input or
    with several is refused here rather than by a TypeError that would fail the run.
    Raises ValueError whose text names each bad field and why, bounded and printable."""
    example = EXAMPLES.get(model, "{...}")
    if len(payloads) != 1:
        raise ValueError(f"payload: expected exactly one JSON object like {example}, "
                         f"got {len(payloads)} inputs")
    payload = payloads[0]
    if not isinstance(payload, dict):
        raise ValueError(f"payload: must be a JSON object like {example}, "
                         f"got {_kind(payload)}")
    try:
        return model.model_validate(payload)
    except ValidationError as err:
        raise ValueError(describe_validation_error(err)) from None


def describe_validation_error(err: ValidationError) -> str:
    problems = []
    for e in err.errors(include_url=False)[:_MAX_PROBLEMS]:
        field = ".".join(bounded_text(str(p), 40) for p in e["loc"]) or "payload"
        message = str(e["msg"]).removeprefix("Value error, ")
        # normalize_identity already starts its message with the field's name.
        problems.append(message if message.startswith(f"{field}:") else f"{field}: {message}")
    more = err.error_count() - len(problems)
    if more > 0:
        problems.append(f"and {more} more problem(s)")
    return bounded_text("; ".join(problems), _MAX_REASON)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {str: "a string", bytes: "binary data", list: "a list", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


# ------------------------------------------------------- what the audit keeps ------------

_SUMMARY = reprlib.Repr()
_SUMMARY.maxlevel = 3
_SUMMARY.maxdict = _SUMMARY.maxlist = _SUMMARY.maxtuple = _SUMMARY.maxset = 6
_SUMMARY.maxstring = _SUMMARY.maxother = 80
MAX_SUMMARY = 300


def summarize_payloads(payloads: Sequence[Any]) -> str:
    """A bounded, printable account of what a message carried, for ``ignored_messages``.

    Never the payload itself: a binary or non-UTF-8 value kept in the status made the
    status query unserialisable ("invalid utf-8 sequence") for the rest of the run, and a
    100 KB string would be kept in full. reprlib bounds depth, items and string lengths;
    repr escapes control characters."""
    if not payloads:
        return "(no input)"
    parts = [_SUMMARY.repr(p) for p in payloads[:3]]
    if len(payloads) > 3:
        parts.append(f"... {len(payloads)} inputs")
    return bounded_text(", ".join(parts), MAX_SUMMARY)


def bounded_text(text: str, limit: int) -> str:
    """``text`` made printable (escapes for the rest) and cut to ``limit`` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    # Lone surrogates (from JSON "\ud800") are printable to Python but cannot be encoded.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit - 3] + "..."
