"""RemediationRollbackWorkflow: undo what a closed remediation run left in force.

A terminated run (or one past its execution timeout) never ran its own rollback. This
run reads the source's history through an activity (``read_changes_in_force``), rebuilds
the source's runbook from the request recorded there, and runs the very same saga pass
as the remediation (workflows/saga.py), in reverse order of the source's changes. It
ends Completed with a ``RollbackReport`` when everything reversible was undone, and
Failed (``RollbackIncomplete``, the report as first detail) when any undo failed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.activity_calls import call, retry_policy
from workflows.failure_types import BUG_EXCEPTION_TYPES
from workflows.lease_holder import LeaseRefused, TargetLease
from workflows.saga import Applied, compensate

with workflow.unsafe.imports_passed_through():
    from runbook import activity_names as act
    from runbook.activity_io import StepOutcome
    from runbook.changes_in_force import ChangesInForce
    from runbook.default_runbook import build_runbook
    from runbook.leases import SIGNAL_LEASE_UPDATE, LeaseRequest, step_resources
    from runbook.definition import RetrySpec
    from runbook.messages import QUERY_STATUS, ROLLBACK_WORKFLOW_TYPE
    from runbook.request import describe_problems, request_problems
    from runbook.rollback import RollbackReport, RolledBackChange, rollback_request_problems
    from runbook.status import StepRecord

# Refusals of the history read that no retry fixes; the run fails with the same type.
SOURCE_REFUSALS = ["SourceStillRunning", "SourceSucceeded", "SourceNotFound",
                   "NotARemediationRun", "PermissionDenied", "InvalidArgument"]
_READ_RETRY = RetrySpec(initial_interval_s=2, maximum_interval_s=30, maximum_attempts=5,
                        non_retryable_error_types=SOURCE_REFUSALS)


@workflow.defn(name=ROLLBACK_WORKFLOW_TYPE, failure_exception_types=BUG_EXCEPTION_TYPES)
class RemediationRollbackWorkflow:
    @workflow.init
    def __init__(self, request: Any = None) -> None:
        self._req, self._problems = rollback_request_problems(request)
        self._report = RollbackReport(
            source_workflow_id=self._req.source_workflow_id if self._req else "",
            requested_by=self._req.requested_by if self._req else "")
        self._lease = TargetLease()
        self._project_incident = ("", "")

    @workflow.query(name=QUERY_STATUS, description="The rollback so far: reverted, failed, left, unknown")
    def status(self) -> RollbackReport:
        return self._report

    @workflow.run
    async def run(self, request: Any = None) -> RollbackReport:
        if self._req is None:
            reason = describe_problems(self._problems)
            raise ApplicationError(f"InvalidRequest: {reason}", [p.model_dump() for p in self._problems],
                                   type="InvalidRequest", non_retryable=True)
        r = self._report
        r.started_at = workflow.now()
        source = await self._read_source()
        r.source_run_id, r.source_closed_as = source.run_id, source.closed_as
        r.in_flight_unknown = source.in_flight
        applied = self._applied(source)
        await self._acquire_lease(applied)
        try:
            failures = await compensate(applied, r.log, self._publish)
        finally:
            await self._lease.release()
        by_step = {c.step_id: c for c in source.changes}
        for entry in r.log:
            c = by_step[entry.step_id]
            done = RolledBackChange(step_id=c.step_id, resource=c.resource, summary=c.summary,
                                    before=c.before, after=c.after, detail=entry.detail)
            {"compensated": r.reverted, "compensation_failed": r.failed,
             "left_in_place": r.left_in_place}.get(entry.action, []).append(done)
        r.finished_at = workflow.now()
        self._publish()
        if failures:
            raise ApplicationError(
                f"RollbackIncomplete: {failures} of {len(applied)} change(s) of "
                f"{r.source_workflow_id} could not be undone; see the report's `failed`",
                r.model_dump(mode="json"), type="RollbackIncomplete", non_retryable=True)
        return r

    async def _read_source(self) -> ChangesInForce:
        wid = self._req.source_workflow_id
        try:
            return await call(act.READ_CHANGES_IN_FORCE, wid, ChangesInForce,
                              start_to_close_timeout=timedelta(minutes=2),
                              heartbeat_timeout=timedelta(seconds=act.READ_HEARTBEAT_S),
                              retry_policy=retry_policy(_READ_RETRY),
                              summary=f"Read what {wid} left in force (its history)"[:200])
        except ActivityError as err:
            cause = err.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            message = cause.message if isinstance(cause, ApplicationError) else str(err)
            # Fail with the refusal's own type, so callers can tell "abort it instead" apart.
            raise ApplicationError(message, type=kind if kind in SOURCE_REFUSALS else "SourceUnreadable",
                                   non_retryable=True) from None

    def _applied(self, source: ChangesInForce) -> list[Applied]:
        """The saga stack of the source, rebuilt: its changes in the order it applied them."""
        if not source.changes:
            return []
        req, problems = request_problems(source.request)
        if req is None:  # cannot happen for a run that changed something; refuse loudly
            raise ApplicationError(f"SourceUnreadable: the source's request is not valid "
                                   f"({describe_problems(problems)})",
                                   type="SourceUnreadable", non_retryable=True)
        book = build_runbook(req)
        self._project_incident = (req.targets.project, req.incident_id)
        phase_of = {s.id: p.number for p in book.phases for s in p.steps}
        applied: list[Applied] = []
        for c in source.changes:
            step = book.step(c.step_id)
            rec = StepRecord(id=step.id, phase=phase_of.get(step.id, 0), summary=step.summary,
                             activity=step.activity, kind=step.kind, reversible=step.reversible,
                             changed=True, resource=c.resource, before=c.before, after=c.after)
            applied.append((step, rec, StepOutcome(changed=True, resource=c.resource,
                                                   before=c.before, after=c.after, detail=c.evidence)))
        return applied

    async def _acquire_lease(self, applied: list[Applied]) -> None:
        """Hold the changed resources while restoring them. Policy refuse: if another run
        holds them now, restoring the old state would undo that run's work."""
        if not applied:
            return
        info = workflow.info()
        request = LeaseRequest(
            workflow_id=info.workflow_id, incident_id=self._project_incident[1],
            resources=sorted({name for step, _, _ in applied for name in step_resources(step)}),
            policy="refuse", requested_at=workflow.now())
        try:
            await self._lease.acquire(self._project_incident[0], request, 60, self._publish)
        except LeaseRefused as refused:
            raise ApplicationError(f"TargetsBusy: {refused}", type="TargetsBusy",
                                   non_retryable=True) from None

    @workflow.signal(name=SIGNAL_LEASE_UPDATE, description="From the lease keeper")
    def lease_update(self, *payloads: Any) -> None:
        # Any arity: a signal sent without input must not fail the rollback run.
        if len(payloads) != 1:
            workflow.logger.warning("lease_update ignored: %d inputs", len(payloads))
            return
        try:
            self._lease.on_update(payloads[0])
        except Exception as err:  # noqa: BLE001 - a malformed signal must never fail the run
            workflow.logger.warning("lease_update ignored: %s", str(err)[:300])

    def _publish(self) -> None:
        r = self._report
        lines = [f"**Rollback of `{r.source_workflow_id}`** (closed as {r.source_closed_as or '?'})",
                 f"reverted {len(r.reverted)} · failed {len(r.failed)} · left in place "
                 f"{len(r.left_in_place)} · in flight, unknown {len(r.in_flight_unknown)}"]
        lines += [f"- {e.step_id}: {e.action} — {e.detail}" for e in r.log]
        workflow.set_current_details("\n".join(lines))
