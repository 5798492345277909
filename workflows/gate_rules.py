"""Who may approve or reject a gate, and why not. Pure, so validators and signals share it.

People are compared by their canonical identity (runbook/identity.py): the approver in a
message is already canonical (runbook/messages.py), and the requester and the allowlist
come from the request, so they are brought to the same form here.
"""

from __future__ import annotations

from runbook.identity import normalize_identity
from runbook.messages import FailureDecisionRequest, GateApproval, GateRejection
from runbook.status import GateRecord


def same_person(a: str, b: str) -> bool:
    return bool(a) and bool(b) and canonical(a) == canonical(b)


def canonical(identity: str) -> str:
    """The canonical form of a name from the request. A name the request validation let
    through but that does not normalise still gets a case-folded, stripped comparison,
    so it can never compare *less* strictly than before."""
    try:
        return normalize_identity(identity, "identity")
    except ValueError:
        return identity.casefold().strip()


def _allowed(gate: GateRecord, approver: str) -> bool:
    return not gate.approvers_allowed or any(same_person(approver, a) for a in gate.approvers_allowed)


def approval_problem(gate: GateRecord | None, msg: GateApproval, *, requested_by: str,
                     two_person_rule: bool, plan_digest: str | None) -> str | None:
    """Why ``msg`` may not approve ``gate``; None when it may."""
    if gate is None:
        return f"unknown gate {msg.gate!r}"
    if gate.kind == "decision":
        return (f"{gate.id} is a decision gate: answer it with decide_failure (retry, "
                f"{'skip, ' if 'skip' in gate.options else ''}rollback)")
    if gate.status != "OPEN":
        return f"gate {gate.id} is not pending (it is {gate.status})"
    if not _allowed(gate, msg.approver):
        return (f"{msg.approver} is not allowed to approve {gate.id}; allowed: "
                f"{', '.join(gate.approvers_allowed)}")
    if two_person_rule and same_person(msg.approver, requested_by):
        return f"{msg.approver} requested this run and may not approve it (two-person rule)"
    if any(same_person(a.approver, msg.approver) for a in gate.approvals):
        return f"{msg.approver} already approved {gate.id}; another approver is needed"
    if msg.plan_digest is not None and msg.plan_digest != plan_digest:
        return (f"plan digest {msg.plan_digest} does not match the current plan {plan_digest}; "
                "review the current plan and approve again")
    if gate.drift and msg.plan_digest is None:
        # The world changed since the plan: an approval must show it saw the rebuilt one.
        return (f"the plan was rebuilt before {gate.id} because targets drifted; approve with "
                f"the new plan digest {plan_digest} (runbook approve --digest)")
    return None


def decision_problem(gate: GateRecord | None, msg: FailureDecisionRequest, *,
                     requested_by: str, two_person_rule: bool) -> str | None:
    """Why ``msg`` may not decide the decision gate ``gate``; None when it may. Rolling
    back is always safe (allowlist only); retry and skip go on with changes, so the
    two-person rule applies to them as to an approval."""
    if gate is None or gate.kind != "decision":
        return f"no decision gate {msg.gate!r}; decision gates are named decide-<step>"
    if gate.status != "OPEN":
        return f"gate {gate.id} is not pending (it is {gate.status})"
    if msg.decision not in gate.options:
        why = (f"the runbook does not mark {gate.step_id} skippable"
               if msg.decision == "skip" else "not offered")
        return f"{msg.decision} is not an option for {gate.id} ({why}); options: " \
               f"{', '.join(gate.options)}"
    if not _allowed(gate, msg.by):
        return (f"{msg.by} is not allowed to decide {gate.id}; allowed: "
                f"{', '.join(gate.approvers_allowed)}")
    if msg.decision != "rollback" and two_person_rule and same_person(msg.by, requested_by):
        return (f"{msg.by} requested this run and may not decide to {msg.decision} it "
                "(two-person rule); rollback is always allowed")
    if msg.decision == "skip" and not msg.reason.strip():
        return f"reason: say why skipping {gate.step_id} is safe; it is recorded for the audit"
    return None


def counting_problem(gate: GateRecord | None, approver: str) -> str | None:
    """Why an approval already validated may no longer count when it takes effect: the
    invariants of a quorum (the gate opens once, each person counts once). Only these are
    checked again, not the plan digest or allowlist: a history recorded by older code
    replays without its validators, and must take the same approvals it took then."""
    if gate is None or gate.status != "OPEN":
        return f"gate {gate.id if gate else '?'} is no longer pending"
    if any(same_person(a.approver, approver) for a in gate.approvals):
        return f"{approver} already approved {gate.id}; another approver is needed"
    return None


def rejection_problem(gate: GateRecord | None, msg: GateRejection) -> str | None:
    """Why ``msg`` may not reject ``gate``. Rejecting is always safe, so only the
    allowlist applies; the two-person rule does not."""
    if gate is None:
        return f"unknown gate {msg.gate!r}"
    if gate.kind == "decision":
        return (f"{gate.id} is a decision gate: answer it with decide_failure (retry, "
                f"{'skip, ' if 'skip' in gate.options else ''}rollback)")
    if gate.status != "OPEN":
        return f"gate {gate.id} is not pending (it is {gate.status})"
    if not _allowed(gate, msg.approver):
        return (f"{msg.approver} is not allowed to decide {gate.id}; allowed: "
                f"{', '.join(gate.approvers_allowed)}")
    return None
