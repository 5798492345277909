"""The operator's messages: decide on a failed step, pause and resume the run.

A mixin of ``RemediationWorkflow`` beside workflows/approvals.py (gates, abort). Each is
an update (validated first; refused with the reason, nothing recorded) and a signal (for
tools that only signal: an invalid one is recorded as ignored, with the reason).
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from runbook.messages import (
        SIGNAL_DECIDE,
        SIGNAL_PAUSE,
        SIGNAL_RESUME,
        UPDATE_DECIDE,
        UPDATE_PAUSE,
        UPDATE_RESUME,
        FailureDecisionRequest,
        GateAck,
        PauseRequest,
        parse_message,
    )
    from runbook.status import PauseRecord
    from workflows.approvals import REFUSED_TYPE
    from workflows.gate_rules import decision_problem
    from workflows.pause import PauseControl


class OperatorHandlers:
    _pauser: PauseControl

    def _operator_problem(self) -> str | None:
        if not self._operator:
            return ("this run started before decisions and pause existed (runbook version "
                    "before operator-1): it cannot be paused or asked; abort it if needed")
        return None

    def _decision_problem(self, msg: FailureDecisionRequest) -> str | None:
        return self._operator_problem() or decision_problem(
            self._gates.get(msg.gate), msg, requested_by=self._effective_requester(),
            two_person_rule=self._req.approval.two_person_rule if self._req else True)

    def _decide_ack(self, msg: FailureDecisionRequest) -> GateAck:
        self._record_proof("decide", msg.by, msg.envelope, gate=msg.gate, decision=msg.decision)
        g = self._apply_decision(msg)
        return GateAck(gate=g.id, accepted=True, approvals=1, required=1, gate_status=g.status)

    def _signal_decision(self, msg: FailureDecisionRequest) -> str | None:
        problem = self._signal_identity_problem("decide") or self._decision_problem(msg)
        if problem is None:
            self._apply_decision(msg)
        return problem

    def _signal_pause(self, msg: PauseRequest) -> str | None:
        problem = (self._signal_identity_problem("pause") or self._operator_problem()
                   or self._pauser.pause_problem(msg))
        if problem is None:
            self._pauser.pause(msg)
        return problem

    def _signal_resume(self, msg: PauseRequest) -> str | None:
        problem = self._signal_identity_problem("resume") or self._pauser.resume_problem(msg)
        if problem is None:
            self._pauser.resume(msg)
        return problem

    # ------------------------------------------------------------ updates --------------

    @workflow.update(name=UPDATE_DECIDE,
                     description='Answer a decision gate: {"gate": "decide-<step>", "decision": '
                                 '"retry" | "skip" | "rollback", "by": "you", "reason": "..."}')
    async def decide_failure(self, *payloads: Any) -> GateAck:
        msg = parse_message(FailureDecisionRequest, payloads)
        problem = self._decision_problem(msg)  # decided meanwhile: one decision only
        if problem:
            raise ApplicationError(problem, type=REFUSED_TYPE, non_retryable=True)
        return self._decide_ack(msg)

    @decide_failure.validator
    def _validate_decide(self, *payloads: Any) -> None:
        msg = parse_message(FailureDecisionRequest, payloads)
        problem = (self._sender_problem("decide", msg.by, msg.envelope, gate=msg.gate,
                                        decision=msg.decision)
                   or self._lone_decision_problem(msg.decision) or self._decision_problem(msg))
        if problem:
            raise ValueError(problem)

    @workflow.update(name=UPDATE_PAUSE, description='Hold before the next step: {"by", "reason"}')
    async def pause_run(self, *payloads: Any) -> PauseRecord:
        msg = parse_message(PauseRequest, payloads)
        problem = self._operator_problem() or self._pauser.pause_problem(msg)
        if problem:
            raise ApplicationError(problem, type=REFUSED_TYPE, non_retryable=True)
        self._record_proof("pause", msg.by, msg.envelope)
        return self._pauser.pause(msg)

    @pause_run.validator
    def _validate_pause(self, *payloads: Any) -> None:
        msg = parse_message(PauseRequest, payloads)
        problem = (self._sender_problem("pause", msg.by, msg.envelope)
                   or self._operator_problem() or self._pauser.pause_problem(msg))
        if problem:
            raise ValueError(problem)

    @workflow.update(name=UPDATE_RESUME, description='Resume a paused run: {"by", "reason"}')
    async def resume_run(self, *payloads: Any) -> PauseRecord:
        msg = parse_message(PauseRequest, payloads)
        problem = self._pauser.resume_problem(msg)
        if problem:
            raise ApplicationError(problem, type=REFUSED_TYPE, non_retryable=True)
        self._record_proof("resume", msg.by, msg.envelope)
        return self._pauser.resume(msg)

    @resume_run.validator
    def _validate_resume(self, *payloads: Any) -> None:
        msg = parse_message(PauseRequest, payloads)
        problem = (self._sender_problem("resume", msg.by, msg.envelope)
                   or self._pauser.resume_problem(msg))
        if problem:
            raise ValueError(problem)

    # ------------------------------------------------------------ signals --------------

    @workflow.signal(name=SIGNAL_DECIDE, description='{"gate": "decide-<step>", "decision": "retry", "by": "alice"}')
    def decide_failure_signal(self, *payloads: Any) -> None:
        self._on_signal(SIGNAL_DECIDE, payloads, FailureDecisionRequest, self._signal_decision)

    @workflow.signal(name=SIGNAL_PAUSE, description='{"by": "alice", "reason": "..."}')
    def pause_signal(self, *payloads: Any) -> None:
        self._on_signal(SIGNAL_PAUSE, payloads, PauseRequest, self._signal_pause)

    @workflow.signal(name=SIGNAL_RESUME, description='{"by": "alice", "reason": "..."}')
    def resume_signal(self, *payloads: Any) -> None:
        self._on_signal(SIGNAL_RESUME, payloads, PauseRequest, self._signal_resume)
