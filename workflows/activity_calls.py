"""How the workflows call activities: retry policies, result decoding, the diagnose read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from runbook import activity_names as act
    from runbook.activity_io import Diagnosis
    from runbook.default_runbook import diagnose_params
    from runbook.definition import RetrySpec
    from runbook.request import RemediationRequest

READ_RETRY = RetrySpec(initial_interval_s=2, maximum_interval_s=30, maximum_attempts=5,
                       non_retryable_error_types=["InvalidArgument", "PermissionDenied", "NotFound"])
COMPENSATION_RETRY = RetrySpec(initial_interval_s=2, maximum_interval_s=60, maximum_attempts=10,
                               non_retryable_error_types=["InvalidArgument", "PermissionDenied"])


def retry_policy(spec: RetrySpec) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=spec.initial_interval_s),
        backoff_coefficient=spec.backoff_coefficient,
        maximum_interval=timedelta(seconds=spec.maximum_interval_s),
        maximum_attempts=spec.maximum_attempts,
        non_retryable_error_types=spec.non_retryable_error_types,
    )


async def call(activity: str, arg: Any, model: type, **options: Any) -> Any:
    """Run an activity and decode its result here, not in the SDK: an undecodable result
    (say, from a worker of another version) then fails this call like any activity
    error, instead of failing the whole run before its rollback."""
    raw = await workflow.execute_activity(activity, arg, **options)
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ApplicationError(f"{activity} returned an unreadable result: {err.error_count()} "
                               f"problem(s), first: {err.errors()[0]['msg']}",
                               type="UnreadableResult", non_retryable=True) from None


async def diagnose(req: RemediationRequest, summary: str) -> Diagnosis:
    """The read-only snapshot of every target the request names."""
    return await call(act.DIAGNOSE, diagnose_params(req), Diagnosis,
                      start_to_close_timeout=timedelta(minutes=5),
                      heartbeat_timeout=timedelta(seconds=act.READ_HEARTBEAT_S),
                      retry_policy=retry_policy(READ_RETRY), summary=summary)
