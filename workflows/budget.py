"""A phase's budget watchdog on durable timers.

At the budget the escalation chain's first level hears of it, halfway to the hard limit
the next level, and at the hard limit the phase's steps are cancelled (the caller then
fails the phase and rolls back). Returns as soon as the steps finish. The deadlines are
read from the phase record each time: a resume after a frozen pause moves them.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from temporalio import workflow

from workflows import run_metrics
from workflows.pause import wait_deadline

with workflow.unsafe.imports_passed_through():
    from runbook.definition import PhaseSpec
    from runbook.status import PhaseRecord


async def watch_budget(task: asyncio.Task, phase: PhaseSpec, rec: PhaseRecord,
                       notify: Callable[..., Awaitable[None]],
                       running: Callable[[], list[str]] = lambda: [],
                       frozen: Callable[[], bool] = lambda: False,
                       cancel: Callable[[], None] | None = None) -> str | None:
    """Wait for ``task``; None when it finished, else (hard limit hit, task cancelled)
    the recipient of the hard-limit notice."""
    midway = lambda: rec.budget_at + (rec.hard_limit_at - rec.budget_at) / 2  # noqa: E731
    alarms = [(lambda: rec.budget_at, "breach", phase.escalation[0]),
              (midway, "escalation", phase.escalation[-1]),
              (lambda: rec.hard_limit_at, "hard_limit", phase.escalation[-1])]
    for at, level, recipient in alarms:
        if await wait_deadline(at, task.done, frozen, f"phase {phase.number} {level}"):
            return None
        run_metrics.budget_alarm(phase.number, level)
        if level == "hard_limit":
            rec.stuck_steps = running()
            (cancel or task.cancel)()
            await workflow.wait_condition(task.done)
            return recipient
        rec.budget_breached = True
        await notify(level, recipient, f"Phase {phase.number} over budget",
                     f"{phase.title} ({phase.owner}) has run past its budget of "
                     f"{phase.budget_s}s; hard limit at {rec.hard_limit_at.isoformat()}",
                     phase=phase.number)
    return None
