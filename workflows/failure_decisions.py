"""Decide on failure: a step that fails after its retries asks the operator what to do.

Under ``on_step_failure: ask`` for its phase (runbook/operator_policy.py) a failed step
opens a decision gate ``decide-<step>`` instead of rolling the whole run back at once: in
an outage, undoing phase 1's working fixes because a phase-2 step hit a quota is often
the wrong call. The gate shows the error, the attempts and what is in force, pages the
phase's escalation chain, and waits for the ``decide_failure`` update:

- ``retry``: run the step again (a new activity; its undo restores what the first
  attempt found, since a failed attempt may have sent part of the change);
- ``skip``: only a step the runbook marks ``skippable``; recorded on the step and the
  phase (its success criteria are not proven for it); a change it sent stays on the saga
  stack and is undone by a later rollback;
- ``rollback``: what the run did before ``operator-1``.

The gate has its own reminder -> escalation -> timeout ladder; at the timeout it rolls
back. The phase budget keeps running while it waits (the wait is part of the phase).
A mixin of ``RemediationWorkflow`` (phase execution is workflows/phase_runner.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from workflows import run_metrics
from workflows.gates import await_decision, open_gate
from workflows.step_errors import PhaseFailed, error_type

with workflow.unsafe.imports_passed_through():
    from runbook.activity_io import StepOutcome
    from runbook.definition import GateSpec, PhaseSpec, StepSpec
    from runbook.messages import FailureDecisionRequest
    from runbook.request import RemediationRequest
    from runbook.status import (
        FailureDecision,
        GateRecord,
        RunState,
        RunStatus,
        StepRecord,
        StepStatus,
    )
    from workflows.pause import PauseControl


# Failures a retry cannot cure: the soak stopped at its sample bound.
NOT_RETRYABLE_BY_DECISION = ("SoakNeverClean",)


class FailureDecisions:
    _status: RunStatus
    _steps: dict[str, StepRecord]
    _gates: dict[str, GateRecord]
    _applied: list[tuple[StepSpec, StepRecord, StepOutcome | None]]
    _req: RemediationRequest | None
    _abort: Any
    _operator: bool
    _stopping: bool
    _pauser: PauseControl

    # -------------------------------------------------------------- running ------------

    async def _run_step_asking(self, step: StepSpec, phase: PhaseSpec) -> None:
        """Run a step; if it fails and its phase asks, settle the failure by decision."""
        try:
            await self._run_step(step, phase)
        except BaseException as err:
            if not self._asks(phase, err):
                raise
            await self._settle_failure(step, phase, err)

    async def _settle_failure(self, step: StepSpec, phase: PhaseSpec, err: BaseException) -> None:
        """Ask until the step succeeds on a retry or is skipped; a rollback decision or
        the gate's timeout raises ``PhaseFailed``."""
        while True:
            decision = await self._decide(step, phase, err)
            if decision.decision == "skip":
                self._skip(step, phase, decision)
                return
            await self._pauser.hold(f"retry of {step.id}")
            if step.kind == "soak":  # a fresh window: the retry's samples count from zero
                ph = self._status.phases[phase.number - 1]
                ph.soak_samples = ph.soak_restarts = 0
            index, prior = self._take_applied(step)
            try:
                await self._run_step(step, phase)
                return
            except BaseException as again:
                if not self._asks(phase, again):
                    raise
                err = again
            finally:
                self._keep_first_before(step, index, prior)

    def _asks(self, phase: PhaseSpec | None, err: BaseException) -> bool:
        """Whether this failure opens a decision gate: a step's own failure (not a
        cancellation, an abort or the hard limit) in a phase whose policy is ``ask``."""
        if not self._operator or phase is None or self._abort is not None or self._stopping:
            return False
        if not isinstance(err, (ActivityError, ApplicationError)):
            return False
        if isinstance(getattr(err, "cause", None), CancelledError):
            return False
        return self._req.on_step_failure.for_phase(phase.number) == "ask"

    # -------------------------------------------------------------- the gate -----------

    async def _decide(self, step: StepSpec, phase: PhaseSpec, err: BaseException) -> FailureDecision:
        s, rec = self._status, self._steps[step.id]
        g, spec = self._open_decision_gate(step, phase, rec, error_type(err))
        chain = phase.escalation
        await self._notify("escalation", chain[0],
                         f"Incident {s.incident_id}: {step.id} failed in phase {phase.number}",
                         f"{rec.error}. Decide: update decide_failure on gate {g.id} with "
                         f"{' | '.join(g.options)}; at {g.timeout_at.isoformat()} it rolls back.",
                         phase=phase.number, gate=g.id)
        try:
            await await_decision(g, spec, chain, phase.number, s, lambda: self._abort is not None,
                                 self._notify, self._pauser.frozen)
        except asyncio.CancelledError:  # abort or hard limit while waiting
            if g.status == "OPEN":
                g.status, g.closed_at = "ABORTED", workflow.now()
            self._close_decision_gate(g)
            raise
        self._close_decision_gate(g)
        if g.status == "TIMED_OUT":
            g.decision = FailureDecision(decision="timeout", gate=g.id, by="deadline",
                                         at=workflow.now(),
                                         reason=f"no decision within {spec.timeout_s}s")
            self._publish()
            raise PhaseFailed(f"{step.id} failed ({rec.error}); decision gate {g.id} timed out "
                              f"after {spec.timeout_s}s")
        if g.decision is None:  # aborted while open: the abort stops the run
            g.status, g.closed_at = "ABORTED", workflow.now()
            raise self._aborted()
        if g.decision.decision == "rollback":
            raise PhaseFailed(f"{step.id} failed ({rec.error}); {g.decision.by} decided to roll "
                              f"back: {g.decision.reason or 'no reason given'}")
        return g.decision

    def _open_decision_gate(self, step: StepSpec, phase: PhaseSpec, rec: StepRecord,
                            failure_type: str) -> tuple[GateRecord, GateSpec]:
        s = self._status
        earlier = sum(1 for g in s.gates if g.kind == "decision" and g.step_id == step.id)
        gate_id = f"decide-{step.id}" + (f"-{earlier + 1}" if earlier else "")
        policy = self._req.on_step_failure.decision_gate
        approvers = self._gates[phase.gate.id].approvers_allowed
        spec = GateSpec(id=gate_id, title=f"{step.id} failed: retry, skip or roll back?",
                        min_approvals=1, approvers=approvers,
                        remind_after_s=policy.remind_after_s,
                        escalate_after_s=policy.escalate_after_s, timeout_s=policy.timeout_s)
        # A soak that used up its samples would only use them up again (history bound).
        retry = [] if failure_type in NOT_RETRYABLE_BY_DECISION else ["retry"]
        options = [*retry, *(["skip"] if step.skippable else []), "rollback"]
        in_force = [st.id for st, _, out in self._applied if out is not None and out.changed]
        g = GateRecord(id=gate_id, title=spec.title, kind="decision", phase=phase.number,
                       min_approvals=1, approvers_allowed=approvers,
                       two_person_rule=self._req.approval.two_person_rule,
                       step_id=step.id, failure=rec.error, attempts=rec.attempts,
                       options=options, in_force=in_force)
        self._gates[gate_id] = g
        s.gates.append(g)
        open_gate(g, spec)
        s.pending_gate = g
        s.state = RunState.AWAITING_DECISION
        if self._pauser.paused:
            self._pauser.hold_at_gate(gate_id)
        self._publish()
        return g, spec

    def _close_decision_gate(self, g: GateRecord) -> None:
        s = self._status
        run_metrics.gate_resolved(g)
        s.pending_gate = None
        self._pauser.left_gate()
        if s.state in (RunState.AWAITING_DECISION, RunState.PAUSED) and s.pause is None:
            s.state = RunState.RUNNING
        if self._safety and g.status != "TIMED_OUT":  # a breach stays paged: a human must look
            self._notifier.resolve(g.id, g.status.lower())
        self._publish()

    def _apply_decision(self, msg: FailureDecisionRequest) -> GateRecord:
        """Record a validated decision (the update and signal handlers call this)."""
        g = self._gates[msg.gate]
        g.decision = FailureDecision(decision=msg.decision, gate=g.id, by=msg.by,
                                     reason=msg.reason, at=workflow.now())
        g.status, g.closed_at = "DECIDED", workflow.now()
        self._publish()
        return g

    # -------------------------------------------------------------- outcomes ----------

    def _skip(self, step: StepSpec, phase: PhaseSpec, decision: FailureDecision) -> None:
        rec = self._steps[step.id]
        rec.status = StepStatus.SKIPPED
        rec.detail = (f"skipped by {decision.by} after it failed: "
                      f"{decision.reason or 'no reason given'}")
        # Nothing sent: nothing to undo. A change it sent stays for a later rollback.
        self._applied[:] = [e for e in self._applied if e[0] is not step or e[2] is not None]
        self._status.phases[phase.number - 1].skipped_steps.append(
            f"{step.id} by {decision.by}: {decision.reason or 'no reason given'}")
        self._publish()

    def _take_applied(self, step: StepSpec) -> tuple[int | None, StepOutcome | None]:
        """Remove the failed attempt's saga entry before a retry; return where it stood
        on the stack and what it sent."""
        for i in range(len(self._applied) - 1, -1, -1):
            if self._applied[i][0] is step:
                return i, self._applied.pop(i)[2]
        return None, None

    def _keep_first_before(self, step: StepSpec, index: int | None,
                           prior: StepOutcome | None) -> None:
        """The retry's saga entry takes the failed attempt's place on the stack (undo
        order unchanged) and restores what the FIRST attempt found: a failed attempt may
        have sent part of the change, so the retry's own ``before`` is not the original."""
        at = next((i for i in range(len(self._applied) - 1, -1, -1)
                   if self._applied[i][0] is step), None)
        entry = self._applied.pop(at) if at is not None else None
        if prior is not None and prior.changed:
            if entry is None or entry[2] is None:
                entry = (step, self._steps[step.id], prior)
            else:
                entry = (step, entry[1], entry[2].model_copy(update={
                    "before": prior.before, "changed": True,
                    "resource": entry[2].resource or prior.resource}))
            entry[1].before, entry[1].changed = prior.before, True
        if entry is not None:
            self._applied.insert(len(self._applied) if index is None else index, entry)
