"""The irreversible cleanup, last of all: delete old revisions behind their own gate.

A mixin of ``RemediationWorkflow``. Declining the gate (reject or timeout) keeps the
successful remediation and reports the revisions left in place; a failed deletion does
too. Since ``faults-1`` an abort accepted while the deletion runs cancels it and rolls
back (``_abortable``); since ``operator-1`` a pause holds before it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.activity_calls import diagnose
from workflows.step_errors import Stop, error_text

with workflow.unsafe.imports_passed_through():
    from runbook.definition import Runbook, StepSpec
    from runbook.outcome import FAULTS_PATCH
    from runbook.request import RemediationRequest
    from runbook.status import RunState, StepRecord, StepStatus
    from workflows.pause import PauseControl


class CleanupRunner:
    _book: Runbook | None
    _req: RemediationRequest | None
    _steps: dict[str, StepRecord]
    _safety: bool
    _operator: bool
    _pauser: PauseControl

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
            if self._safety and workflow.patched(FAULTS_PATCH):
                await self._abortable(self._held_cleanup_step(spec.step))
            else:
                await self._run_step(spec.step, None)
        except (ActivityError, ApplicationError) as err:
            # The remediation itself succeeded; a failed cleanup must not undo it.
            rec.detail = f"cleanup failed: {error_text(err)}"
            return await self._old_revisions()
        return []  # the step deleted every revision that does not serve

    async def _held_cleanup_step(self, step: StepSpec) -> Any:
        if self._operator:  # a pause holds before the deletion, like before any step
            await self._pauser.hold(f"step {step.id}")
        return await self._run_step(step, None)

    async def _abortable(self, step: Awaitable[Any]) -> Any:
        """Run ``step``; an abort accepted meanwhile cancels it and stops the run."""
        task = asyncio.ensure_future(step)
        try:
            await workflow.wait_condition(lambda: task.done() or self._abort is not None)
        except asyncio.CancelledError:
            # A Temporal cancel: stop the step (and wait for it) before the rollback runs.
            await self._stop(task)
            raise
        if task.done():
            return task.result()
        await self._stop(task)
        raise self._aborted()

    @staticmethod
    async def _stop(task: asyncio.Future) -> None:
        task.cancel()
        try:
            await task
        except BaseException:  # noqa: BLE001 - its record says how it ended
            pass

    async def _old_revisions(self) -> list[str]:
        """Revisions that cleanup would have deleted, read fresh for the report."""
        service = self._req.targets.backend_service
        try:
            diag = await diagnose(self._req, f"Read revisions of {service} left in place (read-only)")
        except (ActivityError, ApplicationError):
            return []
        svc = next((x for x in diag.run_services if x.name == service), None)
        return svc.old_revisions() if svc else []
