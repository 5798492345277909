"""The saga's compensation pass: undo every applied step in reverse order.

Each step was put on the stack before its activity started, with the outcome it reported
(or the checkpoint it left when it failed after issuing its change). A step that changed
nothing has nothing to undo; an irreversible one is reported as left in force; a failed
compensation is recorded and the pass goes on, so one bad undo never strands the rest.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Callable

from temporalio import workflow

from workflows.activity_calls import COMPENSATION_RETRY, call, retry_policy
from workflows.step_errors import error_text

with workflow.unsafe.imports_passed_through():
    from runbook.activity_io import CompensationInput, StepOutcome, undo_activity_id
    from runbook.definition import StepSpec
    from runbook.status import RollbackEntry, StepRecord, StepStatus

# (step, its record, the outcome it reported; None until it reports)
Applied = tuple[StepSpec, StepRecord, "StepOutcome | None"]


async def compensate(applied: list[Applied], log: list[RollbackEntry],
                     publish: Callable[[], None]) -> int:
    """Undo ``applied`` in reverse, appending to ``log``; returns how many undos failed."""
    failures = 0
    for step, rec, outcome in reversed(applied):
        now = workflow.now()
        if outcome is None or not outcome.changed:
            log.append(RollbackEntry(at=now, step_id=step.id, action="nothing_to_undo",
                                     detail="the step changed nothing"))
            continue
        if not step.reversible or step.compensation is None:
            rec.status = StepStatus.LEFT_IN_PLACE
            log.append(RollbackEntry(at=now, step_id=step.id, action="left_in_place",
                                     detail="irreversible change; still in force"))
            continue
        try:
            undo: StepOutcome = await call(
                step.compensation,
                CompensationInput(step_id=step.id, params=step.params, outcome=outcome),
                StepOutcome, start_to_close_timeout=timedelta(minutes=20),
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=retry_policy(COMPENSATION_RETRY),
                activity_id=undo_activity_id(step.id), summary=f"Undo {step.id}: {step.summary}")
            rec.status = StepStatus.COMPENSATED
            log.append(RollbackEntry(at=workflow.now(), step_id=step.id, action="compensated",
                                     detail=undo.detail))
        except Exception as err:  # noqa: BLE001 - one failed undo must not stop the rest
            failures += 1
            rec.status = StepStatus.COMPENSATION_FAILED
            log.append(RollbackEntry(at=workflow.now(), step_id=step.id,
                                     action="compensation_failed", detail=error_text(err)))
        publish()
    return failures
