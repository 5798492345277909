"""Running a phase: its steps (sequential groups, parallel within a group) under the
phase's budget watchdog, each step's record, and the saga stack of applied mutations.

A mixin of ``RemediationWorkflow``: the run's control flow (gates, rollback, outcome)
stays in workflows/remediation.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import CancelledError
from temporalio.workflow import ActivityCancellationType

from workflows.activity_calls import call, retry_policy
from workflows.budget import watch_budget
from workflows.soak import soak
from workflows.step_errors import (
    PhaseFailed,
    Stop,
    checkpoint_of,
    error_text,
    failed_attempts,
    in_flight,
)

with workflow.unsafe.imports_passed_through():
    from runbook.activity_io import StepOutcome
    from runbook.definition import PhaseSpec, StepSpec
    from runbook.messages import AbortRequest
    from runbook.status import PhaseRecord, RunState, RunStatus, StepRecord, StepStatus
    from workflows.step_selection import skip_reason


class PhaseRunner:
    _status: RunStatus
    _steps: dict[str, StepRecord]
    _applied: list[tuple[StepSpec, StepRecord, StepOutcome | None]]
    _abort: AbortRequest | None
    _phase_task: asyncio.Task | None

    def _publish(self) -> None:  # provided by the workflow
        raise NotImplementedError

    def _aborted(self) -> Stop:  # provided by the workflow
        raise NotImplementedError

    async def _notify(self, *args: Any, **kwargs: Any) -> None:  # provided by the workflow
        raise NotImplementedError

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
        ids = {s.id for s in phase.steps}
        # The steps still running if the hard limit fires: its reason names them.
        running = lambda: [s.id for s in self._status.steps  # noqa: E731
                           if s.id in ids and s.status == StepStatus.RUNNING]
        frozen = self._pauser.frozen if self._operator else (lambda: False)
        recipient = await watch_budget(task, phase, rec, self._notify, running, frozen,
                                       cancel=lambda: self._cancel_phase(task))
        if recipient is not None:
            rec.status = "FAILED"
            self._close_phase(rec)
            await self._notify("hard_limit", recipient, f"Phase {phase.number} hit its hard limit",
                               f"{phase.title} ran past {phase.hard_limit_s}s; rolling back.",
                               phase=phase.number)
            stuck = f" while {', '.join(rec.stuck_steps)} ran" if rec.stuck_steps else ""
            raise PhaseFailed(f"phase {phase.number} exceeded its hard limit of "
                              f"{phase.hard_limit_s}s{stuck}")
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

    def _cancel_phase(self, task: asyncio.Task) -> None:
        """Stop the phase's steps (hard limit, Temporal cancel). A step cancelled this way
        reports an ordinary activity failure (its checkpoint), which must not open a
        decision gate: ``_stopping`` tells ``_asks`` (workflows/failure_decisions.py)."""
        self._stopping = True
        task.cancel()

    async def _stop_phase_task(self) -> None:
        """On cancellation, let in-flight steps finish cancelling so their records land."""
        task = self._phase_task
        if task is not None and not task.done():
            self._cancel_phase(task)
            await workflow.wait_condition(task.done)
        self._phase_task = None

    async def _run_steps(self, phase: PhaseSpec) -> None:
        for group in phase.step_groups():
            group = [step for step in group if self._selected(step)]
            if not group:
                continue
            if self._operator:  # a pause holds here, between steps, never mid-operation
                await self._pauser.hold(f"step {group[0].id}")
            if len(group) == 1:
                if self._operator:
                    await self._run_step_asking(group[0], phase)
                else:
                    await self._run_step(group[0], phase)
                continue
            # Parallel steps all run to an end so every change is recorded, then the
            # first failure fails the phase (or, where the phase asks, each failure is
            # decided in turn: workflows/failure_decisions.py).
            results = await asyncio.gather(*(self._run_step(s, phase) for s in group),
                                           return_exceptions=True)
            failed = [(s, r) for s, r in zip(group, results) if isinstance(r, BaseException)]
            for _, r in failed:
                if not self._asks(phase, r):
                    raise r
            for s, r in failed:
                await self._settle_failure(s, phase, r)

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
            cancelled = isinstance(err, asyncio.CancelledError) or isinstance(
                getattr(err, "cause", None), CancelledError)
            # 0 = unknown: a step cancelled between retries must not claim one attempt.
            rec.attempts = failed_attempts(err, step.retry, unknown=0 if cancelled else 1)
            checkpoint = checkpoint_of(err)
            if checkpoint is not None and entry_index is not None:
                # The step issued its mutation before failing: record what it replaced.
                rec.before, rec.resource = checkpoint.before, checkpoint.resource
                if in_flight(checkpoint):
                    # Its operation neither finished nor failed: the report must not claim
                    # it as applied, but the undo still runs (the change may land later).
                    rec.outcome_unknown = True
                    rec.detail = (f"sent; operation {checkpoint.operation} had not finished "
                                  "when the step ended: outcome unknown")
                else:
                    rec.changed = True
                self._applied[entry_index] = (step, rec, StepOutcome(
                    changed=True, resource=checkpoint.resource, before=checkpoint.before,
                    detail="failed after issuing its change"))
            self._end_step(rec)
            raise
        rec.status = StepStatus.SUCCEEDED
        # A retry decided after a failure succeeded: the failure is the decision gate's.
        rec.error, rec.outcome_unknown = None, False
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
