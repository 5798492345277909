"""The saga's compensation pass: undo every applied step in reverse order.

Each step was put on the stack before its activity started, with the outcome it reported
(or the checkpoint it left when it failed after issuing its change). A step that changed
nothing has nothing to undo; an irreversible one is reported as left in force; a failed
compensation is recorded and the pass goes on, so one bad undo never strands the rest.

Every undo is bounded: ``UNDO_DEADLINE`` covers all its attempts (a hung Cloud Run rollout
or SQL operation would otherwise hold the rollback for start-to-close x attempts, hours).
With a ``watch`` (runs since ``faults-1``), an undo still running after ``UNDO_SLOW_AFTER``
is written to the rollback log (what it waits on, when it gives up) and escalated.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, RetryState

from workflows.activity_calls import COMPENSATION_RETRY, call, retry_policy
from workflows.step_errors import error_text

with workflow.unsafe.imports_passed_through():
    from runbook.activity_io import CompensationInput, StepOutcome, undo_activity_id
    from runbook.definition import StepSpec
    from runbook.status import RollbackEntry, StepRecord, StepStatus

# (step, its record, the outcome it reported; None until it reports)
Applied = tuple[StepSpec, StepRecord, "StepOutcome | None"]

# All attempts of one undo together; then it is recorded as failed and the pass goes on.
UNDO_DEADLINE = timedelta(minutes=30)
# An undo still running this long is logged and escalated (``watch``).
UNDO_SLOW_AFTER = timedelta(minutes=5)
# Called with the step and the log entry when its undo runs past UNDO_SLOW_AFTER.
SlowUndoWatch = Callable[[StepSpec, RollbackEntry], None]


async def compensate(applied: list[Applied], log: list[RollbackEntry],
                     publish: Callable[[], None], watch: SlowUndoWatch | None = None) -> int:
    """Undo ``applied`` in reverse, appending to ``log``; returns how many undos failed."""
    failures = 0
    for step, rec, outcome in reversed(applied):
        now = workflow.now()
        if outcome is None or not outcome.changed:
            log.append(RollbackEntry(at=now, step_id=step.id, action="nothing_to_undo",
                                     detail="the step changed nothing"))
            continue
        if not step.reversible or step.compensation is None:
            # A step that failed after sending its change (say, its operation never
            # finished) cannot tell whether the change landed: say so, not "in force".
            detail = ("irreversible change; still in force" if rec.status not in (StepStatus.FAILED, StepStatus.SKIPPED)
                      else "irreversible change sent before the step failed; it may be in "
                           f"force: check {outcome.resource or step.id}")
            rec.status = StepStatus.LEFT_IN_PLACE
            log.append(RollbackEntry(at=now, step_id=step.id, action="left_in_place",
                                     detail=detail))
            continue
        undoing = asyncio.ensure_future(call(
            step.compensation,
            CompensationInput(step_id=step.id, params=step.params, outcome=outcome),
            StepOutcome, start_to_close_timeout=timedelta(minutes=20),
            schedule_to_close_timeout=UNDO_DEADLINE, heartbeat_timeout=timedelta(seconds=10),
            retry_policy=retry_policy(COMPENSATION_RETRY),
            activity_id=undo_activity_id(step.id), summary=f"Undo {step.id}: {step.summary}"))
        try:
            if watch is not None:
                await _watch_slow(step, outcome, undoing, log, watch, publish)
            undo: StepOutcome = await undoing
            rec.status = StepStatus.COMPENSATED
            log.append(RollbackEntry(at=workflow.now(), step_id=step.id, action="compensated",
                                     detail=undo.detail))
        except Exception as err:  # noqa: BLE001 - one failed undo must not stop the rest
            failures += 1
            rec.status = StepStatus.COMPENSATION_FAILED
            detail = error_text(err)
            if isinstance(err, ActivityError) and err.retry_state == RetryState.TIMEOUT:
                detail = (f"gave up after {UNDO_DEADLINE}: {step.compensation} on "
                          f"{outcome.resource or step.id} did not finish; an operation it "
                          f"started may still complete: check it (last: {detail})")
            log.append(RollbackEntry(at=workflow.now(), step_id=step.id,
                                     action="compensation_failed", detail=detail))
        publish()
    return failures


async def _watch_slow(step: StepSpec, outcome: StepOutcome, undoing: asyncio.Future,
                      log: list[RollbackEntry], watch: SlowUndoWatch,
                      publish: Callable[[], None]) -> None:
    """Wait up to UNDO_SLOW_AFTER; if the undo still runs, say so in the log and escalate."""
    started = workflow.now()
    try:
        await workflow.wait_condition(undoing.done, timeout=UNDO_SLOW_AFTER)
        return
    except asyncio.TimeoutError:
        pass
    entry = RollbackEntry(
        at=workflow.now(), step_id=step.id, action="waiting",
        detail=(f"undo {step.compensation} of {outcome.resource or step.id} still running after "
                f"{UNDO_SLOW_AFTER}; gives up at {(started + UNDO_DEADLINE).isoformat()}"))
    log.append(entry)
    watch(step, entry)
    publish()
