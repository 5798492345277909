"""Contracts of the compensation-only run (``RemediationRollbackWorkflow``, `runbook rollback`).

Input ``{"source_workflow_id": "...", "requested_by": "..."}``; the result is a
``RollbackReport``. When a compensation fails the run fails with ``RollbackIncomplete``
and the same report as its first detail.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runbook.changes_in_force import InFlightStep
from runbook.request import FieldProblem, model_problems
from runbook.status import ChangeRecord, RollbackEntry

ROLLBACK_ID_PREFIX = "rollback-"


def rollback_workflow_id(source_workflow_id: str) -> str:
    """One rollback per source run at a time: the id is derived from the source's."""
    return f"{ROLLBACK_ID_PREFIX}{source_workflow_id}"


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_workflow_id: str = Field(min_length=1, max_length=1000)
    requested_by: str = Field(default="", max_length=200)

    @field_validator("source_workflow_id")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name the workflow id of the run to roll back")
        return v.strip()


def rollback_request_problems(raw: object) -> tuple[RollbackRequest | None, list[FieldProblem]]:
    """Validate the input; return the model or every problem, each naming its field."""
    return model_problems(RollbackRequest, raw)


class RolledBackChange(ChangeRecord):
    """A change of the source run (``before``: the state restored, ``after``: the state
    the source left) and what its undo said."""

    summary: str = ""
    detail: str = ""  # the compensation's own words, or why it failed


class RollbackReport(BaseModel):
    source_workflow_id: str
    source_run_id: str = ""
    source_closed_as: str = ""
    requested_by: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reverted: list[RolledBackChange] = Field(default_factory=list)
    failed: list[RolledBackChange] = Field(default_factory=list)
    # Irreversible changes (no compensation exists): still in force, by design.
    left_in_place: list[RolledBackChange] = Field(default_factory=list)
    # Steps in flight when the source ended: their effect is unknown, check them by hand.
    in_flight_unknown: list[InFlightStep] = Field(default_factory=list)
    log: list[RollbackEntry] = Field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed
