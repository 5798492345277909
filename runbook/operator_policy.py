"""What the operator controls during a run: ``on_step_failure`` and ``pause`` policies.

``on_step_failure`` says, per phase, what a step failing after its retries does:
``rollback`` undoes every applied change at once (the behaviour before ``operator-1``);
``ask`` opens a decision gate ``decide-<step>`` (retry, skip if the runbook marks the step
skippable, or roll back) with its own reminder -> escalation -> timeout ladder, and rolls
back at its timeout. Phase 1 defaults to rollback (nothing before it is worth keeping);
phases 2-4 ask, because their rollback would also undo phase 1's working fixes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from runbook.approval_policy import OrderedDeadlines, Seconds
from runbook.field_problems import StrictInput

OnFailure = Literal["rollback", "ask"]


class DecisionGatePolicy(OrderedDeadlines):
    """Deadlines of a decision gate: shorter than a phase gate's, since a phase is
    half-done and its budget keeps running while the gate waits."""

    remind_after_s: Seconds = 5 * 60
    escalate_after_s: Seconds = 10 * 60
    timeout_s: Seconds = 30 * 60


class FailurePolicy(StrictInput):
    phase_1: OnFailure = "rollback"
    phase_2: OnFailure = "ask"
    phase_3: OnFailure = "ask"
    phase_4: OnFailure = "ask"
    decision_gate: DecisionGatePolicy = Field(default_factory=DecisionGatePolicy)

    @model_validator(mode="before")
    @classmethod
    def _one_for_all(cls, value: Any) -> Any:
        # "rollback" or "ask" alone applies to every phase.
        if isinstance(value, str):
            if value not in ("rollback", "ask"):
                raise ValueError(f'must be "rollback" or "ask" (for every phase), or per phase '
                                 f'like {{"phase_2": "ask"}}; got {value[:40]!r}')
            return {f"phase_{n}": value for n in range(1, 5)}
        return value

    def for_phase(self, phase: int) -> str:
        return getattr(self, f"phase_{phase}", "rollback")


class PausePolicy(StrictInput):
    # False (default): budgets and gate deadlines keep running while a run is paused,
    # because the outage does. True: they stop while the run holds, and move on by the
    # time it held when it resumes.
    freeze_deadlines: bool = False


__all__ = ["DecisionGatePolicy", "FailurePolicy", "OnFailure", "PausePolicy"]

