"""The run's control-flow exceptions and how an activity's failure is read.

Pure functions over exceptions and their details: the typed error an activity raised, the
mutation checkpoint it attached (so a step that failed after issuing its change is still
rolled back), and the attempt it failed on.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from runbook.activity_io import MutationCheckpoint, checkpoint_in
    from runbook.definition import RetrySpec
    from runbook.status import RunState


class Stop(Exception):
    """A decision (reject, abort, gate timeout) that ends the run with a rollback."""

    def __init__(self, state: RunState, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


class PhaseFailed(Exception):
    pass


def error_text(err: BaseException) -> str:
    """The typed error an activity raised (its ApplicationError, not the library
    exception kept as its cause), else the innermost cause."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = getattr(cause, "cause", None)
    if cause is None:
        cause = err
        while getattr(cause, "cause", None) is not None:
            cause = cause.cause  # type: ignore[assignment]
    kind = getattr(cause, "type", None) or type(cause).__name__
    # str() of an ApplicationError already starts with its type; use the bare message.
    message = getattr(cause, "message", None) or str(cause)
    return f"{kind}: {message}" if message else kind


def error_type(err: BaseException) -> str:
    """The ``type`` of the ApplicationError behind ``err`` ("" when there is none)."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = getattr(cause, "cause", None)
    return (cause.type or "") if cause is not None else ""


def failure_details(err: BaseException) -> list[Any]:
    """Details an activity attached to its failure (or its last heartbeat on timeout)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, ApplicationError):
        return list(cause.details)
    if isinstance(cause, TemporalTimeoutError):
        return list(cause.last_heartbeat_details)
    return []


def checkpoint_of(err: BaseException) -> MutationCheckpoint | None:
    return checkpoint_in(failure_details(err))


def in_flight(cp: MutationCheckpoint) -> bool:
    """The checkpoint names an operation that neither finished nor failed."""
    return bool(cp.operation) and not cp.operation_done \
        and cp.operation not in cp.failed_operations


def failed_attempts(err: BaseException, spec: RetrySpec, unknown: int = 1) -> int:
    """The attempt an activity failed on; ``unknown`` when nothing says (a step cancelled
    between attempts: the cancellation carries no attempt number)."""
    for d in failure_details(err):
        if isinstance(d, dict) and isinstance(d.get("attempt"), int):
            return d["attempt"]
    if isinstance(err, ActivityError) and err.retry_state is not None and \
            err.retry_state.name == "MAXIMUM_ATTEMPTS_REACHED":
        return spec.maximum_attempts
    return unknown


class PlanRefused(Exception):
    def __init__(self, message: str, *details: Any, type: str) -> None:
        super().__init__(message)
        self.details = details
        self.type = type
