"""The run's message handlers: approve/reject (update and signal), abort, status, lease.

A mixin of ``RemediationWorkflow`` (kept apart so the run's control flow reads on its
own). Updates validate first and refuse with the reason; signals cannot refuse, so an
invalid one is recorded as ignored, with the reason, for the audit.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow

from workflows.step_errors import parse_payload

with workflow.unsafe.imports_passed_through():
    from runbook.leases import SIGNAL_LEASE_UPDATE
    from runbook.messages import (
        QUERY_STATUS,
        SIGNAL_ABORT,
        SIGNAL_APPROVE,
        SIGNAL_REJECT,
        UPDATE_APPROVE,
        UPDATE_REJECT,
        AbortRequest,
        GateAck,
        GateApproval,
        GateRejection,
    )
    from runbook.request import RemediationRequest
    from runbook.status import (
        TERMINAL_STATES,
        Approval,
        GateRecord,
        IgnoredMessage,
        RunState,
        RunStatus,
    )
    from workflows.gate_rules import approval_problem, rejection_problem
    from workflows.lease_holder import TargetLease


class ApprovalHandlers:
    _status: RunStatus
    _gates: dict[str, GateRecord]
    _req: RemediationRequest | None
    _abort: AbortRequest | None
    _phase_task: asyncio.Task | None
    _lease: TargetLease

    def _publish(self) -> None:  # provided by the workflow
        raise NotImplementedError

    def _approval_problem(self, msg: GateApproval) -> str | None:
        plan = self._status.plan
        return approval_problem(
            self._gates.get(msg.gate), msg, requested_by=self._status.requested_by,
            two_person_rule=self._req.approval.two_person_rule if self._req else True,
            plan_digest=plan.digest if plan else None)

    def _apply_approval(self, msg: GateApproval, via: str) -> GateAck:
        g = self._gates[msg.gate]
        g.approvals.append(Approval(gate=msg.gate, approver=msg.approver, at=workflow.now(),
                                    comment=msg.comment, plan_digest=msg.plan_digest, via=via))
        if len(g.approvals) >= g.min_approvals:
            g.status, g.closed_at = "APPROVED", workflow.now()
        self._publish()
        return GateAck(gate=g.id, accepted=True, approvals=len(g.approvals),
                       required=g.min_approvals, gate_status=g.status)

    def _apply_rejection(self, msg: GateRejection) -> GateAck:
        g = self._gates[msg.gate]
        g.status, g.closed_at = "REJECTED", workflow.now()
        g.rejected_by, g.reject_reason = msg.approver, msg.reason
        self._publish()
        return GateAck(gate=g.id, accepted=True, approvals=len(g.approvals),
                       required=g.min_approvals, gate_status=g.status)

    def _ignore(self, signal: str, payload: Any, reason: str) -> None:
        self._status.ignored_messages.append(IgnoredMessage(
            at=workflow.now(), signal=signal,
            payload=payload if isinstance(payload, dict) else {"value": payload}, reason=reason))

    @workflow.update(name=UPDATE_APPROVE, description="Approve a pending gate; returns an ack")
    async def approve_gate(self, payload: dict[str, Any]) -> GateAck:
        return self._apply_approval(GateApproval.model_validate(payload), "update")

    @approve_gate.validator
    def _validate_approve(self, payload: dict[str, Any]) -> None:
        msg = parse_payload(GateApproval, payload)
        problem = self._approval_problem(msg)
        if problem:
            raise ValueError(problem)

    @workflow.update(name=UPDATE_REJECT, description="Reject a pending gate: roll back, end REJECTED")
    async def reject_gate(self, payload: dict[str, Any]) -> GateAck:
        return self._apply_rejection(GateRejection.model_validate(payload))

    @reject_gate.validator
    def _validate_reject(self, payload: dict[str, Any]) -> None:
        msg = parse_payload(GateRejection, payload)
        problem = rejection_problem(self._gates.get(msg.gate), msg)
        if problem:
            raise ValueError(problem)

    @workflow.signal(name=SIGNAL_APPROVE, description='{"gate": "phase-1", "approver": "alice"}')
    def approve(self, payload: Any) -> None:
        try:
            msg = parse_payload(GateApproval, payload)
        except ValueError as err:
            return self._ignore(SIGNAL_APPROVE, payload, str(err))
        problem = self._approval_problem(msg)
        if problem:
            return self._ignore(SIGNAL_APPROVE, payload, problem)
        self._apply_approval(msg, "signal")

    @workflow.signal(name=SIGNAL_REJECT, description='{"gate": "phase-1", "approver": "alice", "reason": "..."}')
    def reject(self, payload: Any) -> None:
        try:
            msg = parse_payload(GateRejection, payload)
        except ValueError as err:
            return self._ignore(SIGNAL_REJECT, payload, str(err))
        problem = rejection_problem(self._gates.get(msg.gate), msg)
        if problem:
            return self._ignore(SIGNAL_REJECT, payload, problem)
        self._apply_rejection(msg)

    @workflow.signal(name=SIGNAL_ABORT, description='{"by": "alice", "reason": "..."}')
    def abort(self, payload: Any) -> None:
        try:
            msg = parse_payload(AbortRequest, payload)
        except ValueError as err:
            return self._ignore(SIGNAL_ABORT, payload, str(err))
        if self._abort is not None or self._status.state in (RunState.ROLLING_BACK, *TERMINAL_STATES):
            return self._ignore(SIGNAL_ABORT, payload, f"run is {self._status.state.value}; nothing to abort")
        self._abort = msg
        # Stop the running phase now: its in-flight activities are cancelled and report
        # what they changed, then the saga rolls everything back.
        if self._phase_task is not None and not self._phase_task.done():
            self._phase_task.cancel()

    @workflow.signal(name=SIGNAL_LEASE_UPDATE, description="From the lease keeper: granted, queued or refused")
    def lease_update(self, payload: Any) -> None:
        self._lease.on_update(payload)

    @workflow.query(name=QUERY_STATUS, description="Full run status: state, gates, steps, deadlines")
    def status(self) -> RunStatus:
        return self._status
