"""A gate's deadlines: reminder, escalation and timeout on durable timers.

The gate record is decided by the update/signal handlers (approve, reject, decide) or by
an abort; this waits for that, notifying the escalation chain at each deadline it passes,
and marks the gate TIMED_OUT at the last one. Deadlines are read from the record each
time, so a resume after a frozen pause (workflows/pause.py) moves them. Deterministic:
workflow time and wait_condition only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Awaitable, Callable

from temporalio import workflow

from workflows.pause import wait_deadline

with workflow.unsafe.imports_passed_through():
    from runbook.definition import GateSpec
    from runbook.status import GateRecord, RunStatus
    from workflows.current_details import gate_changes, verified

if TYPE_CHECKING:
    from workflows.notifier import Notifier

# notify(level, recipient, subject, body, phase=..., gate=...)
Notify = Callable[..., Awaitable[None]]


def open_gate(g: GateRecord, spec: GateSpec) -> None:
    now = workflow.now()
    g.status, g.opened_at = "OPEN", now
    g.remind_at = now + timedelta(seconds=spec.remind_after_s)
    g.escalate_at = now + timedelta(seconds=spec.escalate_after_s)
    g.timeout_at = now + timedelta(seconds=spec.timeout_s)


async def await_decision(g: GateRecord, spec: GateSpec, chain: list[str], phase: int | None,
                         status: RunStatus, aborted: Callable[[], bool], notify: Notify,
                         frozen: Callable[[], bool] = lambda: False) -> None:
    """Return once the gate is decided or the run aborted, or after marking it TIMED_OUT."""
    deadlines = [(lambda: g.remind_at, "reminder", chain[0]),
                 (lambda: g.escalate_at, "escalation", chain[min(1, len(chain) - 1)]),
                 (lambda: g.timeout_at, "timeout", chain[-1])]
    decided = lambda: g.status != "OPEN" or aborted()  # noqa: E731
    for at, level, recipient in deadlines:
        if await wait_deadline(at, decided, frozen, f"{spec.id} {level} deadline"):
            return
        if level == "timeout":
            g.status, g.closed_at = "TIMED_OUT", workflow.now()
            status.pending_gate = None
            then = ("rolling back" if g.kind == "decision" or phase is not None
                    else "skipping it")
            await notify("breach", recipient, f"Gate {spec.id} timed out",
                         f"No decision within {spec.timeout_s}s; {then}.",
                         phase=phase, gate=spec.id)
            return
        if g.kind == "decision":
            await notify(level, recipient, f"Gate {spec.id} awaits a decision ({level})",
                         f"{spec.title}: retry, {'skip or ' if 'skip' in g.options else ''}"
                         f"roll back; at {g.timeout_at.isoformat()} it rolls back",
                         phase=phase, gate=spec.id)
            continue
        await notify(level, recipient, f"Gate {spec.id} awaits approval ({level})",
                     f"{spec.title}: {len(g.approvals)}/{g.min_approvals} approvals; "
                     f"times out at {g.timeout_at.isoformat()}", phase=phase, gate=spec.id)


def announce_gate(notifier: "Notifier", s: RunStatus, g: GateRecord, recipient: str,
                  phase: int | None) -> None:
    """identity-1: tell the chain's first recipient the gate is open, with what it will
    change; a verified run's Slack message carries Approve/Reject buttons, answered by the
    approval service (approval/slack_interactions.py)."""
    changes = [f"{c.resource.rsplit('/', 1)[-1]} {c.field}: {c.current} -> {c.desired}"
               for c in gate_changes(s, g)][:20]
    notifier.send("approval", recipient, f"Gate {g.id} awaits approval",
                  f"{g.title}: needs {g.min_approvals} approval(s)"
                  + (f" ({g.quorum_note})" if g.quorum_note else "")
                  + f"; times out at {g.timeout_at.isoformat()}", phase=phase, gate=g.id,
                  plan_digest=s.plan.digest if s.plan else None, changes=changes,
                  buttons=verified(s))
