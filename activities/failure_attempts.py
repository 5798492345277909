"""Stamp every activity failure with the attempt it happened on.

The workflow cannot see attempt numbers, yet an on-call reading the status of a failed
step needs "failed on attempt 4", not a guess. Every failure leaves an activity through
this interceptor, so one place appends ``{"attempt": n}`` as the failure's last detail
(the first detail stays the mutation checkpoint, when there is one).
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)


class FailureAttemptInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _StampAttempt(next)


class _StampAttempt(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except ApplicationError as err:
            stamped = ApplicationError(
                err.message, *err.details, {"attempt": activity.info().attempt},
                type=err.type, non_retryable=err.non_retryable,
                next_retry_delay=err.next_retry_delay, category=err.category)
            # Keep the library exception as the cause, as the activity raised it.
            raise stamped.with_traceback(err.__traceback__) from err.__cause__
