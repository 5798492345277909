"""RemediationWorkflow: interprets a runbook (data) phase by phase behind approval gates.

Shape of a run: validate the request -> diagnose (read-only) and plan -> for each phase:
gate, then its steps under a budget watchdog -> the irreversible cleanup behind its own
gate. Any failure, rejection, abort, cancellation or timeout runs the compensations of
every applied step in reverse order. Everything is deterministic: time from
``workflow.now()``, waiting through timers and ``wait_condition``.

Since ``safety-1`` (runbook/outcome.py) a run first takes a lease on its targets
(workflows/lease_holder.py), notifies per channel in the background (workflows/notifier.py)
and ends Completed only when it SUCCEEDED. The message handlers live in
workflows/approvals.py, phase execution in workflows/phase_runner.py.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from workflows.activity_calls import diagnose
from workflows.approvals import ApprovalHandlers
from workflows.cleanup_runner import CleanupRunner
from workflows.drift_check import check_drift
from workflows.failure_decisions import FailureDecisions
from workflows.operator_handlers import OperatorHandlers
from workflows.pause import PauseControl
from workflows.failure_types import BUG_EXCEPTION_TYPES
from workflows.phase_runner import PhaseRunner

with workflow.unsafe.imports_passed_through():
    from runbook.activity_io import StepOutcome
    from runbook.default_runbook import GCP_FIDELITY_PATCH, build_runbook
    from runbook.definition import GateSpec, StepSpec
    from runbook.leases import LeaseRequest, leased_resources
    from runbook.messages import WORKFLOW_TYPE, AbortRequest
    from runbook.outcome import (
        FAULTS_PATCH,
        MEMO_REPORT,
        OPERATOR_PATCH,
        OUTCOME_ERROR_TYPE,
        SAFETY_PATCH,
    )
    from runbook.identity_policy import IDENTITY_PATCH
    from runbook.plan import build_plan
    from runbook.request import describe_problems, request_problems
    from runbook.status import (
        GateRecord,
        PhaseRecord,
        RemediationReport,
        RollbackEntry,
        RunState,
        RunStatus,
        StepRecord,
    )
    from workflows import search_attributes as sa
    from workflows.current_details import render_current_details
    from workflows.report import build_report
from workflows.gates import announce_gate, await_decision, open_gate
from workflows.lease_holder import LeaseRefused, TargetLease
from workflows.notifier import Notifier, legacy_notify
from workflows import run_metrics
from workflows.saga import compensate
from workflows.step_errors import PhaseFailed, PlanRefused, Stop, error_text

# A bug fails the run rather than its workflow task; nondeterminism fails only the task
# (see workflows/failure_types.py).
@workflow.defn(name=WORKFLOW_TYPE, failure_exception_types=BUG_EXCEPTION_TYPES)
class RemediationWorkflow(ApprovalHandlers, OperatorHandlers, FailureDecisions, CleanupRunner,
                          PhaseRunner):
    @workflow.init
    def __init__(self, request: Any = None) -> None:
        # Validate here so handlers that run before run() see a consistent state, and so
        # bad input fails the run cleanly instead of looping on a decoding error.
        self._req, self._problems = request_problems(request)
        raw = request if isinstance(request, dict) else {}
        req = self._req
        self._book = build_runbook(req) if req else None
        self._status = RunStatus(
            incident_id=req.incident_id if req else str(raw.get("incident_id", "invalid"))[:64],
            requested_by=req.requested_by if req else "",
            state=RunState.PLANNING,
        )
        self._gates: dict[str, GateRecord] = {}
        self._steps: dict[str, StepRecord] = {}
        # Saga stack: (step, record, outcome); outcome None until the step reports.
        self._applied: list[tuple[StepSpec, StepRecord, StepOutcome | None]] = []
        self._abort: AbortRequest | None = None
        self._phase_task: asyncio.Task | None = None
        self._published: dict[str, Any] = {}
        # Set at run start from the safety-1 patch marker (runbook/outcome.py): leases,
        # per-channel notifications and honest outcomes; older histories replay without.
        self._safety = False
        # Set at run start from the operator-1 patch marker: decisions on failure, pause,
        # drift re-approval (workflows/failure_decisions.py, pause.py, drift_check.py).
        self._operator = False
        # Set at run start from the identity-1 patch marker: the identity policy is
        # resolved and enforced (workflows/identity_checks.py).
        self._identity_on = False
        # The run itself is stopping the phase's steps (hard limit, cancel): their failures
        # are not decided on (workflows/phase_runner.py ``_cancel_phase``).
        self._stopping = False
        self._pauser = PauseControl(self._status, self._publish,
                                    req.pause.freeze_deadlines if req else False)
        self._cancelled = False
        self._lease = TargetLease()
        self._notifier = Notifier(self._status, req.notifications.channels_for if req else
                                  (lambda _recipient: []), self._publish)
        if self._book is None:
            return
        for phase in self._book.phases:
            self._add_gate(phase.gate, phase.number)
            self._status.phases.append(PhaseRecord(
                number=phase.number, title=phase.title, owner=phase.owner,
                budget_s=phase.budget_s, hard_limit_s=phase.hard_limit_s,
                escalation=phase.escalation, success_criteria=phase.success_criteria,
                soak_window_s=phase.soak.window_s if phase.soak else 0))
            for step in phase.steps:
                self._add_step(step, phase.number)
        self._add_gate(self._book.cleanup.gate, 0)
        self._add_step(self._book.cleanup.step, 0)

    def _add_gate(self, g: GateSpec, phase: int) -> None:
        rec = GateRecord(id=g.id, title=g.title, min_approvals=g.min_approvals,
                         approvers_allowed=g.approvers, phase=phase,
                         two_person_rule=self._req.approval.two_person_rule)
        self._gates[g.id] = rec
        self._status.gates.append(rec)

    def _add_step(self, step: StepSpec, phase: int) -> None:
        rec = StepRecord(id=step.id, phase=phase, summary=step.summary, activity=step.activity,
                         kind=step.kind, reversible=step.reversible)
        self._steps[step.id] = rec
        self._status.steps.append(rec)

    # ---------------------------------------------------------------- run ----------------

    @workflow.run
    async def run(self, request: Any = None) -> RemediationReport:
        s = self._status
        s.started_at = workflow.now()
        run_metrics.run_started()
        if self._req is None:
            reason = describe_problems(self._problems)
            self._finish(RunState.FAILED, f"invalid request: {reason}")
            raise ApplicationError(f"InvalidRequest: {reason}",
                                   [p.model_dump() for p in self._problems],
                                   type="InvalidRequest", non_retryable=True)
        # The runbook version is fixed when a run starts: histories recorded before the
        # gcp-fidelity steps replay without them (and the audit can tell the two apart).
        workflow.patched(GCP_FIDELITY_PATCH)
        self._safety = workflow.patched(SAFETY_PATCH)
        self._operator = self._safety and workflow.patched(OPERATOR_PATCH)
        self._identity_on = self._operator and workflow.patched(IDENTITY_PATCH)
        self._publish()
        if self._safety and self._req.notifications.legacy_channels:
            return self._refuse_legacy_channels()
        if self._identity_on:
            refusal = await self._resolve_identity()
            self._publish()
            if refusal:
                # The refusal starts with the request field it is about.
                self._refuse_request(refusal, refusal.split(":", 1)[0])
        revisions_left: list[str] = []
        try:
            if self._safety:
                await self._take_lease()
            await self._plan()
            for phase in self._book.phases:
                if self._operator and phase.number > 1:
                    await check_drift(self._req, self._book, self._status, phase,
                                      self._gates[phase.gate.id], self._notify)
                await self._await_gate(phase.gate, phase.escalation, phase.number)
                await self._run_phase(phase)
            revisions_left = await self._cleanup()
            self._finish(RunState.SUCCEEDED, "remediation complete")
            if not self._safety:
                return await self._conclude(revisions_left)
        except LeaseRefused as refused:
            self._finish(RunState.REFUSED, str(refused))  # nothing was changed
        except Stop as stop:
            await self._ending(self._rollback(stop.state, stop.reason))
        except asyncio.CancelledError:
            self._cancelled = True
            await self._ending(self._stop_phase_task())
            by = self._abort.by if self._abort else "workflow cancellation"
            await self._ending(self._rollback(RunState.ABORTED, f"cancelled by {by}"))
        except PlanRefused as refused:
            self._finish(RunState.FAILED, str(refused))
            await self._ending(self._lease.release())
            raise ApplicationError(str(refused), *refused.details, type=refused.type,
                                   non_retryable=True) from None
        except PhaseFailed as failed:
            await self._ending(self._rollback(RunState.ROLLED_BACK, str(failed)))
        except Exception as err:  # noqa: BLE001 - any failure must still roll back
            await self._ending(self._stop_phase_task())
            await self._ending(self._rollback(RunState.ROLLED_BACK, f"failed: {error_text(err)}"))
        return await self._ending(self._conclude(revisions_left))

    async def _ending(self, step: Awaitable[Any]) -> Any:
        """Since safety-1 the ending (rollback, report, lease release) runs to its end even
        when a Temporal cancel arrives meanwhile: a late cancel must not roll back a
        finished remediation, nor stop a rollback half way."""
        if not self._safety:
            return await step
        task = asyncio.ensure_future(step)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.done():
                    return task.result()

    def _refuse_legacy_channels(self) -> RemediationReport:
        self._refuse_request(
            "notifications: a list of channels with URLs is the form before safety-1; "
            "URLs are secrets: route recipients to channel names configured on the worker "
            '(e.g. {"routes": {"db-oncall": ["db-slack"]}, "default": ["log"]})', "notifications")

    def _refuse_request(self, reason: str, field: str) -> None:
        """End the run before it changed anything: a request this worker will not run."""
        self._finish(RunState.FAILED, f"invalid request: {reason}")
        raise ApplicationError(f"InvalidRequest: {reason}", [{"field": field, "reason": reason}],
                               type="InvalidRequest", non_retryable=True)

    async def _conclude(self, revisions_left: list[str]) -> RemediationReport:
        """End the run: release the lease, report, and end as runbook/outcome.py says."""
        s = self._status
        await self._lease.release()
        report = build_report(s, revisions_left=revisions_left, book=self._book)
        await self._notify("outcome", s.requested_by or "on-call",
                           f"Incident {s.incident_id}: run {s.state.value}", s.outcome_reason)
        if self._safety:
            self._notifier.resolve_at_end()
            await self._notifier.drain()
            report.escalations = s.escalations
        await workflow.wait_condition(workflow.all_handlers_finished)
        if s.state == RunState.SUCCEEDED or (not self._safety and s.state != RunState.FAILED):
            return report
        details = report.model_dump(mode="json")
        if self._cancelled and s.state == RunState.ABORTED:
            # A cancellation carries no result: the report goes to the memo first.
            workflow.upsert_memo({MEMO_REPORT: details})
            raise CancelledError(f"cancelled; rolled back: {s.outcome_reason}")
        kind = OUTCOME_ERROR_TYPE[s.state]
        raise ApplicationError(f"{kind}: {s.outcome_reason}", details, type=kind,
                               non_retryable=True)

    async def _take_lease(self) -> None:
        """Hold every resource the runbook may change before diagnosing: a second run on
        the same targets waits in line or is refused (runbook/leases.py)."""
        req, info = self._req, workflow.info()
        request = LeaseRequest(workflow_id=info.workflow_id, incident_id=req.incident_id,
                               resources=leased_resources(self._book), policy=req.lease.policy,
                               requested_at=workflow.now())

        def on_change() -> None:
            self._status.lease = self._lease.view
            if self._lease.view and self._lease.view.state == "queued":
                self._status.state = RunState.WAITING_FOR_LEASE
            self._publish()

        task = asyncio.create_task(self._lease.acquire(
            req.targets.project, request, req.lease.max_wait_s, on_change))
        try:
            await workflow.wait_condition(lambda: task.done() or self._abort is not None)
        except asyncio.CancelledError:  # cancelled while waiting in line: leave the line
            task.cancel()
            await workflow.wait_condition(task.done)
            raise
        if not task.done():  # aborted while waiting in line: leave the line
            task.cancel()
            await workflow.wait_condition(task.done)
            raise self._aborted()
        task.result()
        self._status.lease = self._lease.view
        self._status.state = RunState.PLANNING
        self._publish()

    def _finish(self, state: RunState, reason: str) -> None:
        self._status.state = state
        self._status.outcome_reason = reason
        self._status.finished_at = workflow.now()
        run_metrics.run_finished(state)
        self._status.pending_gate = None
        self._end_pause("the run ended")
        self._publish()

    def _end_pause(self, why: str) -> None:
        """Nothing holds once the run rolls back or ends: close the pause for the record."""
        p = self._status.pause
        if p is not None:
            p.resumed_at, p.resumed_by, p.resume_reason = workflow.now(), "workflow", why
            self._status.pause = None

    # ------------------------------------------------------------- publish ---------------

    def _publish(self) -> None:
        """Keep search attributes and the UI's current details in step with the status."""
        s = self._status
        wanted = {"incident": s.incident_id, "phase": s.current_phase or 0, "state": s.state.value}
        updates = []
        if self._published.get("incident") != wanted["incident"]:
            updates.append(sa.INCIDENT.value_set(wanted["incident"]))
        if self._published.get("phase") != wanted["phase"]:
            updates.append(sa.PHASE.value_set(wanted["phase"]))
        if self._published.get("state") != wanted["state"]:
            updates.append(sa.STATE.value_set(wanted["state"]))
        if updates:
            workflow.upsert_search_attributes(updates)
            self._published = wanted
        workflow.set_current_details(render_current_details(s))

    # ---------------------------------------------------------------- plan ---------------

    async def _plan(self) -> None:
        req = self._req
        try:
            diag = await diagnose(req, f"Diagnose {req.targets.project}: connector, SQL, "
                                       "services, LB, secrets, certificate (read-only)")
        except (ActivityError, ApplicationError) as err:
            raise PlanRefused(f"DiagnoseFailed: {error_text(err)}", type="DiagnoseFailed") from err
        plan = build_plan(req, self._book, diag)
        self._status.plan = plan
        self._publish()
        if plan.problems:
            reason = describe_problems(plan.problems)
            raise PlanRefused(f"PreflightFailed: {reason}",
                               [p.model_dump() for p in plan.problems], type="PreflightFailed")

    # ---------------------------------------------------------------- gates --------------

    async def _await_gate(self, spec: GateSpec, chain: list[str], phase: int | None) -> None:
        """Wait for a gate's approval with reminder, escalation and timeout on timers.

        Rejection, abort and timeout raise ``Stop`` (the cleanup gate's caller turns a
        rejection or timeout into a skip)."""
        g = self._gates[spec.id]
        open_gate(g, spec)
        self._status.pending_gate = g
        self._status.state = RunState.AWAITING_APPROVAL
        if self._operator and self._pauser.paused:
            self._pauser.hold_at_gate(g.id)
        self._publish()
        if self._identity_on:
            announce_gate(self._notifier, self._status, g, chain[0], phase)
        try:
            await await_decision(g, spec, chain, phase, self._status,
                                 lambda: self._abort is not None, self._notify,
                                 self._pauser.frozen if self._operator else (lambda: False))
        except asyncio.CancelledError:  # Cancel from the UI while the gate waited
            run_metrics.gate_resolved(g)  # "aborted": the gate is still OPEN here
            raise
        self._status.pending_gate = None
        self._pauser.left_gate()
        if g.status == "OPEN":  # abort arrived while the gate was open
            g.status, g.closed_at = "ABORTED", workflow.now()
        run_metrics.gate_resolved(g)
        if self._safety and g.status != "TIMED_OUT":
            # A timed-out gate's page stays open: the breach is real and needs a human.
            self._notifier.resolve(g.id, g.status.lower())
        self._publish()
        if g.status == "APPROVED":
            return
        if self._abort is not None:
            raise self._aborted()
        if g.status == "REJECTED":
            raise Stop(RunState.REJECTED, f"gate {g.id} rejected by {g.rejected_by}: {g.reject_reason}")
        raise Stop(RunState.TIMED_OUT, f"gate {g.id} timed out after {spec.timeout_s}s")

    def _aborted(self) -> Stop:
        return Stop(RunState.ABORTED, f"aborted by {self._abort.by}: {self._abort.reason}")

    # ------------------------------------------------------------- rollback --------------

    async def _rollback(self, end_state: RunState, reason: str) -> None:
        self._status.outcome_reason = reason
        self._status.state = RunState.ROLLING_BACK
        run_metrics.rollback_started(end_state, self._status.current_phase)
        self._status.pending_gate = None
        self._end_pause("the rollback does not pause")
        self._publish()
        for ph in self._status.phases:
            if ph.status == "RUNNING":  # interrupted by a cancellation mid-phase
                ph.status = "FAILED"
                self._close_phase(ph)
        watch = self._escalate_slow_undo if self._safety and workflow.patched(FAULTS_PATCH) \
            else None
        failures = await compensate(self._applied, self._status.rollback_log, self._publish,
                                    watch)
        if failures:
            self._finish(RunState.FAILED, f"{reason}; rollback incomplete: {failures} "
                                          "compensation(s) failed, see rollback_log")
        else:
            self._finish(end_state, reason)

    def _escalate_slow_undo(self, step: StepSpec, entry: RollbackEntry) -> None:
        rec = self._steps[step.id]
        chain = (self._book.phases[rec.phase - 1].escalation if rec.phase
                 else self._book.cleanup.escalation)
        for recipient in chain:
            self._notifier.send("escalation", recipient,
                                f"Incident {self._status.incident_id}: rollback stuck on {step.id}",
                                entry.detail, phase=rec.phase or None)

    # --------------------------------------------------------------- notify --------------

    async def _notify(self, level: str, recipient: str, subject: str, body: str, *,
                      phase: int | None = None, gate: str | None = None) -> None:
        if self._safety:
            self._notifier.send(level, recipient, subject, body, phase=phase, gate=gate)
            return
        await legacy_notify(self._status, self._req.notifications.legacy_channels, level, recipient,
                            subject, body, phase=phase, gate=gate)
        self._publish()
