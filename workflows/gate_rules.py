"""Who may approve or reject a gate, and why not. Pure, so validators and signals share it."""

from __future__ import annotations

from runbook.messages import GateApproval, GateRejection
from runbook.status import GateRecord


def approval_problem(gate: GateRecord | None, msg: GateApproval, *, requested_by: str,
                     two_person_rule: bool, plan_digest: str | None) -> str | None:
    """Why ``msg`` may not approve ``gate``; None when it may."""
    if gate is None:
        return f"unknown gate {msg.gate!r}"
    if gate.status != "OPEN":
        return f"gate {gate.id} is not pending (it is {gate.status})"
    if gate.approvers_allowed and msg.approver not in gate.approvers_allowed:
        return (f"{msg.approver} is not allowed to approve {gate.id}; allowed: "
                f"{', '.join(gate.approvers_allowed)}")
    if two_person_rule and requested_by and msg.approver == requested_by:
        return f"{msg.approver} requested this run and may not approve it (two-person rule)"
    if any(a.approver == msg.approver for a in gate.approvals):
        return f"{msg.approver} already approved {gate.id}; another approver is needed"
    if msg.plan_digest is not None and msg.plan_digest != plan_digest:
        return (f"plan digest {msg.plan_digest} does not match the current plan {plan_digest}; "
                "review the current plan and approve again")
    return None


def rejection_problem(gate: GateRecord | None, msg: GateRejection) -> str | None:
    """Why ``msg`` may not reject ``gate``. Rejecting is always safe, so only the
    allowlist applies; the two-person rule does not."""
    if gate is None:
        return f"unknown gate {msg.gate!r}"
    if gate.status != "OPEN":
        return f"gate {gate.id} is not pending (it is {gate.status})"
    if gate.approvers_allowed and msg.approver not in gate.approvers_allowed:
        return (f"{msg.approver} is not allowed to decide {gate.id}; allowed: "
                f"{', '.join(gate.approvers_allowed)}")
    return None
