"""A gate's deadlines: reminder, escalation and timeout on durable timers.

The gate record is decided by the update/signal handlers (approve, reject) or by an abort;
this waits for that, notifying the escalation chain at each deadline it passes, and marks
the gate TIMED_OUT at the last one. Deterministic: workflow time and wait_condition only.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Awaitable, Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from runbook.definition import GateSpec
    from runbook.status import GateRecord, RunStatus

# notify(level, recipient, subject, body, phase=..., gate=...)
Notify = Callable[..., Awaitable[None]]


def open_gate(g: GateRecord, spec: GateSpec) -> None:
    now = workflow.now()
    g.status, g.opened_at = "OPEN", now
    g.remind_at = now + timedelta(seconds=spec.remind_after_s)
    g.escalate_at = now + timedelta(seconds=spec.escalate_after_s)
    g.timeout_at = now + timedelta(seconds=spec.timeout_s)


async def await_decision(g: GateRecord, spec: GateSpec, chain: list[str], phase: int | None,
                         status: RunStatus, aborted: Callable[[], bool], notify: Notify) -> None:
    """Return once the gate is decided or the run aborted, or after marking it TIMED_OUT."""
    deadlines = [(g.remind_at, "reminder", chain[0]),
                 (g.escalate_at, "escalation", chain[min(1, len(chain) - 1)]),
                 (g.timeout_at, "timeout", chain[-1])]
    for at, level, recipient in deadlines:
        while g.status == "OPEN" and not aborted():
            remaining = (at - workflow.now()).total_seconds()
            if remaining <= 0:
                break
            try:
                await workflow.wait_condition(
                    lambda: g.status != "OPEN" or aborted(),
                    timeout=remaining, timeout_summary=f"{spec.id} {level} deadline")
            except asyncio.TimeoutError:
                break
        if g.status != "OPEN" or aborted():
            return
        if level == "timeout":
            g.status, g.closed_at = "TIMED_OUT", workflow.now()
            status.pending_gate = None
            await notify("breach", recipient, f"Gate {spec.id} timed out",
                         f"No decision within {spec.timeout_s}s; rolling back.",
                         phase=phase, gate=spec.id)
            return
        await notify(level, recipient, f"Gate {spec.id} awaits approval ({level})",
                     f"{spec.title}: {len(g.approvals)}/{g.min_approvals} approvals; "
                     f"times out at {g.timeout_at.isoformat()}", phase=phase, gate=spec.id)
