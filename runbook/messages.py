"""Payloads of the workflow's updates and signals, and the names of its handlers.

Interface (the UI, the CLI and other tools depend on these names):
- update ``approve_gate`` / signal ``approve``: ``GateApproval``
- update ``reject_gate`` / signal ``reject``: ``GateRejection``
- signal ``abort``: ``AbortRequest`` (cancelling the workflow is treated the same)
- query ``status``: ``runbook.status.RunStatus``
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

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
QUERY_STATUS = "status"

# Search attributes (register them on the server: see README / devstack).
SA_INCIDENT = "RemediationIncident"  # Keyword
SA_PHASE = "RemediationPhase"  # Int
SA_STATE = "RemediationState"  # Keyword


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GateApproval(_Message):
    gate: str
    approver: str = Field(min_length=1)
    comment: str = ""
    plan_digest: str | None = None


class GateRejection(_Message):
    gate: str
    approver: str = Field(min_length=1)
    reason: str = ""


class AbortRequest(_Message):
    by: str = Field(min_length=1)
    reason: str = ""


class GateAck(BaseModel):
    """What ``approve_gate`` / ``reject_gate`` return to the caller."""

    gate: str
    accepted: bool
    approvals: int
    required: int
    gate_status: str
