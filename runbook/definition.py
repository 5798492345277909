"""The runbook as data: phases of steps, each naming its activity and compensation.

The workflow interprets a ``Runbook`` deterministically; it knows nothing of Cloud Run
or Cloud SQL. Changing what the product does means changing the data built in
``runbook.default_runbook``, not the workflow.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field


class RetrySpec(BaseModel):
    initial_interval_s: float = 2.0
    backoff_coefficient: float = 2.0
    maximum_interval_s: float = 60.0
    maximum_attempts: int = 6
    non_retryable_error_types: list[str] = Field(
        default_factory=lambda: ["InvalidArgument", "PermissionDenied", "FailedPrecondition",
                                 "NotFound", "StepFailed"]
    )


class StepSpec(BaseModel):
    id: str
    # Human summary shown on the activity in history and the UI.
    summary: str
    activity: str
    params: dict[str, Any]
    # ``probe``/``read`` steps change nothing; ``mutate`` steps are recorded for rollback.
    kind: Literal["read", "mutate", "probe", "soak"] = "mutate"
    compensation: str | None = None
    reversible: bool = True
    # Steps of a phase that share a group run concurrently; groups run in order.
    parallel_group: str | None = None
    retry: RetrySpec = Field(default_factory=RetrySpec)
    start_to_close_s: int = 20 * 60
    # Short: cancellation reaches an activity only on a heartbeat (throttled to 0.8x this),
    # and a dead worker is noticed after this long.
    heartbeat_s: int | None = 10
    # Steps added to the runbook after runs were already recorded: the workflow runs them
    # only where ``workflow.patched(since_patch)`` holds, so older histories still replay.
    since_patch: str | None = None
    # An operator may skip this step after it fails (decision gate, ``on_step_failure:
    # ask``): only steps whose failure leaves the outage fixed, e.g. an alert policy.
    skippable: bool = False

    @property
    def start_to_close(self) -> timedelta:
        return timedelta(seconds=self.start_to_close_s)


class GateSpec(BaseModel):
    id: str
    title: str
    min_approvals: int
    approvers: list[str]
    remind_after_s: int
    escalate_after_s: int
    timeout_s: int


class SoakSpec(BaseModel):
    window_s: int
    sample_every_s: int
    max_error_rate: float


class PhaseSpec(BaseModel):
    number: int
    title: str
    owner: str
    budget_s: int
    hard_limit_s: int
    escalation: list[str]
    gate: GateSpec
    steps: list[StepSpec]
    success_criteria: list[str]
    soak: SoakSpec | None = None

    def step_groups(self) -> list[list[StepSpec]]:
        """Consecutive steps sharing a parallel_group form one concurrent batch."""
        groups: list[list[StepSpec]] = []
        for step in self.steps:
            if groups and step.parallel_group and groups[-1][0].parallel_group == step.parallel_group:
                groups[-1].append(step)
            else:
                groups.append([step])
        return groups


class CleanupSpec(BaseModel):
    """The irreversible deletion of old revisions, last of all, behind its own gate."""

    gate: GateSpec
    step: StepSpec
    escalation: list[str]


class Runbook(BaseModel):
    name: str
    phases: list[PhaseSpec]
    cleanup: CleanupSpec

    def step(self, step_id: str) -> StepSpec:
        for phase in self.phases:
            for step in phase.steps:
                if step.id == step_id:
                    return step
        if self.cleanup.step.id == step_id:
            return self.cleanup.step
        raise KeyError(step_id)
