"""The run's message handlers: approve/reject (update and signal), abort, status, lease.

A mixin of ``RemediationWorkflow`` (kept apart so the run's control flow reads on its
own). Updates validate first and refuse with the reason; signals cannot refuse, so an
invalid one is recorded as ignored, with the reason, for the audit.

No message may kill or blind a run. Every handler takes any number of inputs (the CLI
sends none when ``--input`` is left out, and a raw client may send several) and a signal
handler never raises: a ValueError or TypeError escaping one would fail the whole run
(they are bug types, workflows/failure_types.py) with nothing rolled back. What is kept
of an ignored message is a bounded, printable summary, never the raw payload.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Sequence, TypeVar

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from runbook.leases import SIGNAL_LEASE_UPDATE
    from runbook.messages import (
        MAX_SUMMARY,
        QUERY_STATUS,
        SIGNAL_ABORT,
        SIGNAL_APPROVE,
        SIGNAL_REJECT,
        UPDATE_ABORT,
        UPDATE_APPROVE,
        UPDATE_REJECT,
        AbortAck,
        AbortRequest,
        GateAck,
        GateApproval,
        GateRejection,
        bounded_text,
        parse_message,
        summarize_payloads,
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
    from workflows.gate_rules import approval_problem, counting_problem, rejection_problem
    from workflows.lease_holder import TargetLease

from workflows.identity_checks import IdentityChecks

# The status keeps the latest ignored messages only (and counts them all): a flood of junk
# signals must not grow the status query's answer without bound.
MAX_IGNORED_KEPT = 50
_MAX_NAME = 64
_MAX_REASON = 600
REFUSED_TYPE = "MessageRefused"

MessageT = TypeVar("MessageT", bound=BaseModel)


class ApprovalHandlers(IdentityChecks):
    _status: RunStatus
    _gates: dict[str, GateRecord]
    _req: RemediationRequest | None
    _abort: AbortRequest | None
    _phase_task: asyncio.Task | None
    _lease: TargetLease

    def _publish(self) -> None:  # provided by the workflow
        raise NotImplementedError

    # ------------------------------------------------------------ decisions ------------

    def _approval_problem(self, msg: GateApproval) -> str | None:
        plan = self._status.plan
        return approval_problem(
            self._gates.get(msg.gate), msg, requested_by=self._effective_requester(),
            two_person_rule=self._req.approval.two_person_rule if self._req else True,
            plan_digest=plan.digest if plan else None)

    def _apply_approval(self, msg: GateApproval, via: str) -> GateAck:
        g = self._gates[msg.gate]
        proof = self._record_proof("approve", msg.approver, msg.envelope, gate=msg.gate)
        g.approvals.append(Approval(gate=msg.gate, approver=msg.approver, at=workflow.now(),
                                    comment=msg.comment, plan_digest=msg.plan_digest, via=via,
                                    identity="verified" if proof else "claimed",
                                    idp=proof.idp if proof else None,
                                    channel=proof.via if proof else None))
        if len(g.approvals) >= g.min_approvals:
            g.status, g.closed_at = "APPROVED", workflow.now()
        self._publish()
        return GateAck(gate=g.id, accepted=True, approvals=len(g.approvals),
                       required=g.min_approvals, gate_status=g.status)

    def _apply_rejection(self, msg: GateRejection) -> GateAck:
        g = self._gates[msg.gate]
        self._record_proof("reject", msg.approver, msg.envelope, gate=msg.gate)
        g.status, g.closed_at = "REJECTED", workflow.now()
        g.rejected_by, g.reject_reason = msg.approver, msg.reason
        self._publish()
        return GateAck(gate=g.id, accepted=True, approvals=len(g.approvals),
                       required=g.min_approvals, gate_status=g.status)

    def _signal_approval(self, msg: GateApproval) -> str | None:
        problem = self._signal_identity_problem("approve") or self._approval_problem(msg)
        if problem is None:
            self._apply_approval(msg, "signal")
        return problem

    def _signal_rejection(self, msg: GateRejection) -> str | None:
        problem = (self._signal_identity_problem("reject")
                   or rejection_problem(self._gates.get(msg.gate), msg))
        if problem is None:
            self._apply_rejection(msg)
        return problem

    def _signal_abort(self, msg: AbortRequest) -> str | None:
        return self._signal_identity_problem("abort") or self._take_abort(msg)

    def _abort_problem(self) -> str | None:
        if self._abort is not None or self._status.state in (RunState.ROLLING_BACK, *TERMINAL_STATES):
            return f"run is {self._status.state.value}; nothing to abort"
        return None

    def _take_abort(self, msg: AbortRequest) -> str | None:
        problem = self._abort_problem()
        if problem:
            return problem
        self._abort = msg
        self._record_proof("abort", msg.by, msg.envelope)
        # Stop the running phase now: its in-flight activities are cancelled and report
        # what they changed, then the saga rolls everything back.
        if self._phase_task is not None and not self._phase_task.done():
            self._stopping = True
            self._phase_task.cancel()
        return None

    # ------------------------------------------------------------ ignoring -------------

    def _ignore(self, signal: str, summary: str, reason: str) -> None:
        s = self._status
        s.ignored_messages_total += 1
        s.ignored_messages.append(IgnoredMessage(
            at=workflow.now(), signal=bounded_text(signal, _MAX_NAME),
            payload=bounded_text(summary, MAX_SUMMARY), reason=bounded_text(reason, _MAX_REASON)))
        del s.ignored_messages[:-MAX_IGNORED_KEPT]
        workflow.logger.warning("ignored signal %s: %s", s.ignored_messages[-1].signal,
                                s.ignored_messages[-1].reason)

    def _on_signal(self, name: str, payloads: Sequence[Any], model: type[MessageT],
                   act: Callable[[MessageT], str | None]) -> None:
        """Parse, decide and act; anything refused (or failing) is recorded as ignored."""
        try:
            problem = act(parse_message(model, payloads))
        except ValueError as err:
            problem = str(err)
        except Exception as err:  # noqa: BLE001 - a signal must never fail the run
            workflow.logger.exception("signal %s could not be handled", name)
            problem = f"could not be handled ({type(err).__name__}: {err}); the run goes on"
        if problem:
            self._ignore(name, summarize_payloads(payloads), problem)

    # ------------------------------------------------------------ updates --------------

    @workflow.update(name=UPDATE_APPROVE, description="Approve a pending gate; returns an ack")
    async def approve_gate(self, *payloads: Any) -> GateAck:
        msg = parse_message(GateApproval, payloads)
        # The validator passed; check again at the moment it takes effect, so no
        # interleaving of messages can count an approver twice or open a gate twice.
        problem = counting_problem(self._gates.get(msg.gate), msg.approver)
        if problem:
            raise ApplicationError(problem, type=REFUSED_TYPE, non_retryable=True)
        return self._apply_approval(msg, "update")

    @approve_gate.validator
    def _validate_approve(self, *payloads: Any) -> None:
        msg = parse_message(GateApproval, payloads)
        problem = (self._sender_problem("approve", msg.approver, msg.envelope, gate=msg.gate,
                                        digest=msg.plan_digest)
                   or self._approval_problem(msg))
        if problem:
            raise ValueError(problem)

    @workflow.update(name=UPDATE_REJECT, description="Reject a pending gate: roll back, end REJECTED")
    async def reject_gate(self, *payloads: Any) -> GateAck:
        msg = parse_message(GateRejection, payloads)
        gate = self._gates.get(msg.gate)
        if gate is None or gate.status != "OPEN":  # decided meanwhile: one decision only
            raise ApplicationError(f"gate {msg.gate} is no longer pending", type=REFUSED_TYPE,
                                   non_retryable=True)
        return self._apply_rejection(msg)

    @reject_gate.validator
    def _validate_reject(self, *payloads: Any) -> None:
        msg = parse_message(GateRejection, payloads)
        problem = (self._sender_problem("reject", msg.approver, msg.envelope, gate=msg.gate)
                   or rejection_problem(self._gates.get(msg.gate), msg))
        if problem:
            raise ValueError(problem)

    @workflow.update(name=UPDATE_ABORT, description='Abort: roll back everything, end ABORTED '
                                                    '{"by": "alice", "reason": "..."}')
    async def abort_run(self, *payloads: Any) -> AbortAck:
        problem = self._take_abort(parse_message(AbortRequest, payloads))
        if problem:  # aborted meanwhile
            raise ApplicationError(problem, type=REFUSED_TYPE, non_retryable=True)
        return AbortAck(accepted=True, state=self._status.state.value)

    @abort_run.validator
    def _validate_abort(self, *payloads: Any) -> None:
        msg = parse_message(AbortRequest, payloads)
        problem = self._sender_problem("abort", msg.by, msg.envelope) or self._abort_problem()
        if problem:
            raise ValueError(problem)

    # ------------------------------------------------------------ signals --------------

    @workflow.signal(name=SIGNAL_APPROVE, description='{"gate": "phase-1", "approver": "alice"}')
    def approve(self, *payloads: Any) -> None:
        self._on_signal(SIGNAL_APPROVE, payloads, GateApproval, self._signal_approval)

    @workflow.signal(name=SIGNAL_REJECT, description='{"gate": "phase-1", "approver": "alice", "reason": "..."}')
    def reject(self, *payloads: Any) -> None:
        self._on_signal(SIGNAL_REJECT, payloads, GateRejection, self._signal_rejection)

    @workflow.signal(name=SIGNAL_ABORT, description='{"by": "alice", "reason": "..."}')
    def abort(self, *payloads: Any) -> None:
        self._on_signal(SIGNAL_ABORT, payloads, AbortRequest, self._signal_abort)

    @workflow.signal(name=SIGNAL_LEASE_UPDATE, description="From the lease keeper: granted, queued or refused")
    def lease_update(self, *payloads: Any) -> None:
        if len(payloads) != 1:
            return self._ignore(SIGNAL_LEASE_UPDATE, summarize_payloads(payloads),
                                f"payload: expected exactly one lease view, got {len(payloads)} inputs")
        try:
            self._lease.on_update(payloads[0])
        except Exception as err:  # noqa: BLE001 - a signal must never fail the run
            self._ignore(SIGNAL_LEASE_UPDATE, summarize_payloads(payloads),
                         f"could not be handled ({type(err).__name__}: {err})")

    @workflow.signal(dynamic=True, description="Any other name: recorded as ignored")
    def unknown_signal(self, name: str, payloads: Sequence[RawValue]) -> None:
        # Raw values: the payload is only described, never decoded, so no encoding (binary,
        # protobuf, malformed JSON) can make this fail.
        self._ignore(name, summarize_raw(payloads),
                     f"unknown signal {bounded_text(name, _MAX_NAME)!r}; this run takes "
                     f"{SIGNAL_APPROVE}, {SIGNAL_REJECT}, {SIGNAL_ABORT}, decide_failure, "
                     "pause and resume")

    # ------------------------------------------------------------ query ----------------

    @workflow.query(name=QUERY_STATUS, description="Full run status: state, gates, steps, deadlines")
    def status(self) -> RunStatus:
        return self._status


def summarize_raw(payloads: Sequence[RawValue]) -> str:
    """What raw payloads were, by encoding and size, with a printable prefix."""
    if not payloads:
        return "(no input)"
    parts = []
    for raw in payloads[:3]:
        encoding = raw.payload.metadata.get("encoding", b"").decode("utf-8", "backslashreplace")
        data = raw.payload.data
        parts.append(f"<{encoding or 'no encoding'}, {len(data)} bytes: {data[:48]!r}>")
    if len(payloads) > 3:
        parts.append(f"... {len(payloads)} inputs")
    return ", ".join(parts)
