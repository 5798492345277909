"""RemediationWorkflow: interprets a runbook (data) phase by phase behind approval gates.

Shape of a run: validate the request -> diagnose (read-only) and plan -> for each phase:
gate, then its steps under a budget watchdog -> the irreversible cleanup behind its own
gate. Any failure, rejection, abort, cancellation or timeout runs the compensations of
every applied step in reverse order. Everything is deterministic: time from
``workflow.now()``, waiting through timers and ``wait_condition``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

from workflows.activity_calls import call, diagnose, retry_policy
from workflows.failure_types import BUG_EXCEPTION_TYPES

with workflow.unsafe.imports_passed_through():
    from runbook import activity_names as act
    from runbook.activity_io import (
        NotifyOutcome,
        NotifyParams,
        StepOutcome,
    )
    from runbook.default_runbook import GCP_FIDELITY_PATCH, build_runbook
    from runbook.definition import GateSpec, PhaseSpec, StepSpec
    from runbook.messages import (
        QUERY_STATUS,
        SIGNAL_ABORT,
        SIGNAL_APPROVE,
        SIGNAL_REJECT,
        UPDATE_APPROVE,
        UPDATE_REJECT,
        WORKFLOW_TYPE,
        AbortRequest,
        GateAck,
        GateApproval,
        GateRejection,
    )
    from runbook.plan import build_plan
    from runbook.request import describe_problems, request_problems
    from runbook.status import (
        TERMINAL_STATES,
        Approval,
        Escalation,
        GateRecord,
        IgnoredMessage,
        PhaseRecord,
        RemediationReport,
        RunState,
        RunStatus,
        StepRecord,
        StepStatus,
    )
    from workflows import search_attributes as sa
    from workflows.current_details import render_current_details
    from workflows.gate_rules import approval_problem, rejection_problem
    from workflows.report import build_report
    from workflows.step_selection import skip_reason
from workflows.budget import watch_budget
from workflows.gates import await_decision, open_gate
from workflows.saga import compensate
from workflows.soak import soak
from workflows.step_errors import (
    PhaseFailed,
    PlanRefused,
    Stop,
    checkpoint_of,
    error_text,
    failed_attempts,
    parse_payload,
)

# A bug fails the run rather than its workflow task; nondeterminism fails only the task
# (see workflows/failure_types.py).
@workflow.defn(name=WORKFLOW_TYPE, failure_exception_types=BUG_EXCEPTION_TYPES)
class RemediationWorkflow:
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
        if self._book is None:
            return
        for phase in self._book.phases:
            self._add_gate(phase.gate)
            self._status.phases.append(PhaseRecord(
                number=phase.number, title=phase.title, owner=phase.owner,
                budget_s=phase.budget_s, hard_limit_s=phase.hard_limit_s,
                escalation=phase.escalation, success_criteria=phase.success_criteria))
            for step in phase.steps:
                self._add_step(step, phase.number)
        self._add_gate(self._book.cleanup.gate)
        self._add_step(self._book.cleanup.step, 0)

    def _add_gate(self, g: GateSpec) -> None:
        rec = GateRecord(id=g.id, title=g.title, min_approvals=g.min_approvals,
                         approvers_allowed=g.approvers)
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
        if self._req is None:
            reason = describe_problems(self._problems)
            self._finish(RunState.FAILED, f"invalid request: {reason}")
            raise ApplicationError(f"InvalidRequest: {reason}",
                                   [p.model_dump() for p in self._problems],
                                   type="InvalidRequest", non_retryable=True)
        # The runbook version is fixed when a run starts: histories recorded before the
        # gcp-fidelity steps replay without them (and the audit can tell the two apart).
        workflow.patched(GCP_FIDELITY_PATCH)
        self._publish()
        try:
            await self._plan()
            for phase in self._book.phases:
                await self._await_gate(phase.gate, phase.escalation, phase.number)
                await self._run_phase(phase)
            revisions_left = await self._cleanup()
            self._finish(RunState.SUCCEEDED, "remediation complete")
            return await self._conclude(revisions_left)
        except Stop as stop:
            await self._rollback(stop.state, stop.reason)
        except asyncio.CancelledError:
            await self._stop_phase_task()
            by = self._abort.by if self._abort else "workflow cancellation"
            await self._rollback(RunState.ABORTED, f"cancelled by {by}")
        except PlanRefused as refused:
            self._finish(RunState.FAILED, str(refused))
            raise ApplicationError(str(refused), *refused.details, type=refused.type,
                                   non_retryable=True) from None
        except PhaseFailed as failed:
            await self._rollback(RunState.ROLLED_BACK, str(failed))
        except Exception as err:  # noqa: BLE001 - any failure must still roll back
            await self._stop_phase_task()
            await self._rollback(RunState.ROLLED_BACK, f"failed: {error_text(err)}")
        return await self._conclude([])

    async def _conclude(self, revisions_left: list[str]) -> RemediationReport:
        s = self._status
        report = build_report(s, revisions_left=revisions_left, book=self._book)
        await self._notify("outcome", s.requested_by or "on-call",
                           f"Incident {s.incident_id}: run {s.state.value}", s.outcome_reason)
        await workflow.wait_condition(workflow.all_handlers_finished)
        if s.state == RunState.FAILED:
            # A rollback that could not undo everything must be loud: fail the workflow,
            # with the full record attached.
            raise ApplicationError(f"RollbackIncomplete: {s.outcome_reason}",
                                   report.model_dump(mode="json"),
                                   type="RollbackIncomplete", non_retryable=True)
        return report

    def _finish(self, state: RunState, reason: str) -> None:
        self._status.state = state
        self._status.outcome_reason = reason
        self._status.finished_at = workflow.now()
        self._status.pending_gate = None
        self._publish()

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
        self._publish()
        await await_decision(g, spec, chain, phase, self._status,
                             lambda: self._abort is not None, self._notify)
        self._status.pending_gate = None
        if g.status == "OPEN":  # abort arrived while the gate was open
            g.status, g.closed_at = "ABORTED", workflow.now()
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

    @workflow.query(name=QUERY_STATUS, description="Full run status: state, gates, steps, deadlines")
    def status(self) -> RunStatus:
        return self._status

    # --------------------------------------------------------------- phases --------------

    async def _run_phase(self, phase: PhaseSpec) -> None:
        rec = self._status.phases[phase.number - 1]
        start = workflow.now()
        rec.status, rec.started_at = "RUNNING", start
        rec.budget_at = start + timedelta(seconds=phase.budget_s)
        rec.hard_limit_at = start + timedelta(seconds=phase.hard_limit_s)
        self._status.current_phase = phase.number
        self._status.state = RunState.RUNNING
        self._publish()
        task = asyncio.create_task(self._run_steps(phase))
        self._phase_task = task
        recipient = await watch_budget(task, phase, rec, self._notify)
        if recipient is not None:
            rec.status = "FAILED"
            self._close_phase(rec)
            await self._notify("hard_limit", recipient, f"Phase {phase.number} hit its hard limit",
                               f"{phase.title} ran past {phase.hard_limit_s}s; rolling back.",
                               phase=phase.number)
            raise PhaseFailed(f"phase {phase.number} exceeded its hard limit of {phase.hard_limit_s}s")
        self._phase_task = None
        try:
            task.result()
        except BaseException as err:
            rec.status = "FAILED"
            self._close_phase(rec)
            if self._abort is not None:
                raise self._aborted() from None
            if isinstance(err, asyncio.CancelledError):
                raise
            raise PhaseFailed(f"phase {phase.number} failed: {error_text(err)}") from err
        rec.status = "SUCCEEDED"
        self._close_phase(rec)

    def _close_phase(self, rec: PhaseRecord) -> None:
        rec.finished_at = workflow.now()
        rec.duration_s = (rec.finished_at - rec.started_at).total_seconds()
        self._publish()

    async def _stop_phase_task(self) -> None:
        """On cancellation, let in-flight steps finish cancelling so their records land."""
        task = self._phase_task
        if task is not None and not task.done():
            task.cancel()
            await workflow.wait_condition(task.done)
        self._phase_task = None

    async def _run_steps(self, phase: PhaseSpec) -> None:
        for group in phase.step_groups():
            group = [step for step in group if self._selected(step)]
            if not group:
                continue
            if len(group) == 1:
                await self._run_step(group[0], phase)
                continue
            # Parallel steps all run to an end so every change is recorded, then the
            # first failure fails the phase.
            results = await asyncio.gather(*(self._run_step(s, phase) for s in group),
                                           return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r

    def _selected(self, step: StepSpec) -> bool:
        reason = skip_reason(step, self._status.plan)
        if reason is None:
            return True
        rec = self._steps[step.id]
        rec.status, rec.detail = StepStatus.SKIPPED, reason
        return False

    async def _run_step(self, step: StepSpec, phase: PhaseSpec | None) -> StepOutcome:
        rec = self._steps[step.id]
        rec.status, rec.started_at = StepStatus.RUNNING, workflow.now()
        self._status.state = RunState.RUNNING if step.kind == "mutate" else RunState.VALIDATING
        self._publish()
        entry_index = None
        if step.kind == "mutate":
            # Registered before the activity starts: a crash or cancel mid-step still
            # leaves a record the rollback can act on.
            self._applied.append((step, rec, None))
            entry_index = len(self._applied) - 1
        try:
            if step.kind == "soak":
                outcome = await soak(step, phase.soak, self._status.phases[phase.number - 1],
                                     self._publish)
            else:
                outcome = await call(
                    step.activity, step.params, StepOutcome,
                    start_to_close_timeout=step.start_to_close,
                    heartbeat_timeout=timedelta(seconds=step.heartbeat_s) if step.heartbeat_s else None,
                    retry_policy=retry_policy(step.retry),
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    activity_id=step.id, summary=step.summary)
        except BaseException as err:
            rec.status = StepStatus.FAILED
            rec.error = "cancelled" if isinstance(err, asyncio.CancelledError) else error_text(err)
            rec.attempts = failed_attempts(err, step.retry)
            checkpoint = checkpoint_of(err)
            if checkpoint is not None and entry_index is not None:
                # The step issued its mutation before failing: record what it replaced.
                rec.changed, rec.before, rec.resource = True, checkpoint.before, checkpoint.resource
                self._applied[entry_index] = (step, rec, StepOutcome(
                    changed=True, resource=checkpoint.resource, before=checkpoint.before,
                    detail="failed after issuing its change"))
            self._end_step(rec)
            raise
        rec.status = StepStatus.SUCCEEDED
        rec.attempts, rec.changed = outcome.attempt, outcome.changed
        rec.before, rec.after, rec.detail = outcome.before, outcome.after, outcome.detail
        rec.resource = outcome.resource
        if entry_index is not None:
            self._applied[entry_index] = (step, rec, outcome)
        self._end_step(rec)
        return outcome

    def _end_step(self, rec: StepRecord) -> None:
        rec.finished_at = workflow.now()
        rec.duration_s = (rec.finished_at - rec.started_at).total_seconds()
        self._publish()

    # -------------------------------------------------------------- cleanup --------------

    async def _cleanup(self) -> list[str]:
        """The irreversible deletion of old revisions, behind its own gate. Declining it
        keeps the successful remediation; the revisions are reported as left in place."""
        spec = self._book.cleanup
        rec = self._steps[spec.step.id]
        try:
            await self._await_gate(spec.gate, spec.escalation, None)
        except Stop as stop:
            if stop.state == RunState.ABORTED:
                raise
            rec.status, rec.detail = StepStatus.SKIPPED, stop.reason
            return await self._old_revisions()
        try:
            await self._run_step(spec.step, None)
        except (ActivityError, ApplicationError) as err:
            # The remediation itself succeeded; a failed cleanup must not undo it.
            rec.detail = f"cleanup failed: {error_text(err)}"
            return await self._old_revisions()
        return []  # the step deleted every revision that does not serve

    async def _old_revisions(self) -> list[str]:
        """Revisions that cleanup would have deleted, read fresh for the report."""
        service = self._req.targets.backend_service
        try:
            diag = await diagnose(self._req, f"Read revisions of {service} left in place (read-only)")
        except (ActivityError, ApplicationError):
            return []
        svc = next((x for x in diag.run_services if x.name == service), None)
        return svc.old_revisions() if svc else []

    # ------------------------------------------------------------- rollback --------------

    async def _rollback(self, end_state: RunState, reason: str) -> None:
        self._status.outcome_reason = reason
        self._status.state = RunState.ROLLING_BACK
        self._status.pending_gate = None
        self._publish()
        for ph in self._status.phases:
            if ph.status == "RUNNING":  # interrupted by a cancellation mid-phase
                ph.status = "FAILED"
                self._close_phase(ph)
        failures = await compensate(self._applied, self._status.rollback_log, self._publish)
        if failures:
            self._finish(RunState.FAILED, f"{reason}; rollback incomplete: {failures} "
                                          "compensation(s) failed, see rollback_log")
        else:
            self._finish(end_state, reason)

    # --------------------------------------------------------------- notify --------------

    async def _notify(self, level: str, recipient: str, subject: str, body: str, *,
                      phase: int | None = None, gate: str | None = None) -> None:
        try:
            out: NotifyOutcome = await call(
                act.NOTIFY,
                NotifyParams(run_id=workflow.info().workflow_id, incident_id=self._status.incident_id,
                             level=level if level != "hard_limit" else "breach", recipient=recipient,
                             subject=subject, body=body, channels=self._req.notifications),
                NotifyOutcome, start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3,
                                         maximum_interval=timedelta(seconds=10)),
                summary=f"Notify {recipient}: {subject}"[:200])
            delivered = out.delivered
        except (ActivityError, ApplicationError):
            # A dead notification channel must never block a gate or a rollback.
            delivered = []
        self._status.escalations.append(Escalation(
            at=workflow.now(), level=level, recipient=recipient, subject=subject,
            phase=phase, gate=gate, delivered=delivered))
        self._publish()
