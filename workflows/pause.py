"""Pause and resume: the run finishes the step in flight, then holds before its next step.

A pause never interrupts an operation: Google Cloud keeps applying a change once sent, so
stopping mid-operation would only hide its outcome. The run holds at the next hold point
(before a step group, before a decided retry) or at once when it waits at a gate (the gate
keeps taking approvals). Status, Current Details and the ``RemediationState`` search
attribute say PAUSED, with who paused and why.

Deadlines keep running while paused unless the request sets ``pause.freeze_deadlines``:
then the phase budget, its hard limit and the open gate's deadlines stop while the run
holds and move on by the time it held (``wait_deadline`` waits on them that way).
Deterministic: workflow time and ``wait_condition`` only.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from runbook.messages import PauseRequest
    from runbook.status import TERMINAL_STATES, PauseRecord, RunState, RunStatus

GATE_STATES = (RunState.AWAITING_APPROVAL, RunState.AWAITING_DECISION)


class PauseControl:
    def __init__(self, status: RunStatus, publish: Callable[[], None], freeze: bool) -> None:
        self._status = status
        self._publish = publish
        self._freeze = freeze
        # The state to show again on resume when the run held at a gate.
        self._state_before: RunState | None = None

    @property
    def paused(self) -> bool:
        return self._status.pause is not None

    def frozen(self) -> bool:
        """Deadlines stand still: paused, holding, and the request froze them."""
        p = self._status.pause
        return p is not None and p.held_at is not None and p.freeze_deadlines

    # ------------------------------------------------------------ messages -------------

    def pause_problem(self, msg: PauseRequest) -> str | None:
        s = self._status
        if s.state in TERMINAL_STATES or s.state == RunState.ROLLING_BACK:
            return f"run is {s.state.value}; nothing to pause"
        if s.pause is not None:
            return (f"already paused by {s.pause.by} since "
                    f"{s.pause.requested_at.isoformat()}: {s.pause.reason or 'no reason given'}")
        return None

    def resume_problem(self, msg: PauseRequest) -> str | None:
        if self._status.pause is None:
            return f"run is {self._status.state.value}, not paused; nothing to resume"
        return None

    def pause(self, msg: PauseRequest) -> PauseRecord:
        s = self._status
        record = PauseRecord(by=msg.by, reason=msg.reason, requested_at=workflow.now(),
                             freeze_deadlines=self._freeze)
        s.pause = record
        s.pauses.append(record)
        if s.pending_gate is not None and s.state in GATE_STATES:
            self.hold_at_gate(s.pending_gate.id)
        self._publish()
        return record

    def resume(self, msg: PauseRequest) -> PauseRecord:
        s = self._status
        record = s.pause
        now = workflow.now()
        record.resumed_at, record.resumed_by, record.resume_reason = now, msg.by, msg.reason
        if self.frozen():
            self._shift_deadlines(record.held_at, now)
        s.pause = None
        if s.state == RunState.PAUSED and self._state_before is not None:
            s.state = self._state_before
        self._state_before = None
        self._publish()
        return record

    # ------------------------------------------------------------ holding --------------

    def hold_at_gate(self, gate_id: str) -> None:
        """A gate is open while paused: nothing runs, so the run holds here at once."""
        s, p = self._status, self._status.pause
        if p is None:
            return
        if p.held_at is None:
            p.held_at = workflow.now()
        p.held_before = f"gate {gate_id} (approvals are still taken)"
        if s.state != RunState.PAUSED:
            self._state_before = s.state
            s.state = RunState.PAUSED

    async def hold(self, before: str) -> None:
        """Hold here while paused (the caller is between steps). Returns on resume; a
        cancellation (abort, hard limit) ends the wait like any other."""
        s, p = self._status, self._status.pause
        if p is None:
            return
        if p.held_at is None:
            p.held_at = workflow.now()
        p.held_before = before
        self._state_before = None  # not at a gate any more: resuming shows the step
        state = s.state
        s.state = RunState.PAUSED
        self._publish()
        await workflow.wait_condition(lambda: self._status.pause is None)
        s.state = state if state != RunState.PAUSED else RunState.RUNNING
        self._publish()

    def left_gate(self) -> None:
        """The gate the run held at closed while paused: resuming goes on to its steps."""
        if self._state_before is not None:
            self._state_before = RunState.RUNNING

    def _shift_deadlines(self, held_at: datetime, now: datetime) -> None:
        """Frozen deadlines move on by the time the run held while they existed: a phase
        (or gate) that started during the pause moves by less than the whole pause."""
        s = self._status
        phase = s.phases[s.current_phase - 1] if s.current_phase else None
        if phase is not None and phase.status == "RUNNING" and phase.hard_limit_at:
            since = max(held_at, phase.started_at or held_at)
            # Budget and hard limit move together, so the escalation halfway between them
            # (workflows/budget.py) moves by the same time, even after a breach passed.
            if phase.hard_limit_at > since:
                phase.budget_at += now - since
                phase.hard_limit_at += now - since
        g = s.pending_gate
        if g is not None:
            since = max(held_at, g.opened_at or held_at)
            for name in ("remind_at", "escalate_at", "timeout_at"):
                at = getattr(g, name)
                if at is not None and at > since:
                    setattr(g, name, at + (now - since))


async def wait_deadline(deadline: Callable[[], datetime], done: Callable[[], bool],
                        frozen: Callable[[], bool], summary: str) -> bool:
    """Wait until ``done()`` (True) or the deadline passes (False). While ``frozen()`` the
    deadline does not pass; it is read again after, since a resume may have moved it.

    Unfrozen, this issues exactly one timer per deadline, as the waits before pause
    existed did, so their histories replay unchanged."""
    while True:
        if done():
            return True
        if frozen():
            await workflow.wait_condition(lambda: done() or not frozen())
            continue
        remaining = (deadline() - workflow.now()).total_seconds()
        if remaining <= 0:
            return False
        try:
            await workflow.wait_condition(lambda: done() or frozen(), timeout=remaining,
                                          timeout_summary=summary)
        except asyncio.TimeoutError:
            pass

