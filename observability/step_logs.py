"""A log event when a runbook step starts, finishes and fails, from every worker.

Before this, no worker line said a step started, finished or failed: the on-call had to
open the UI. ``StepLogInterceptor`` (an activity inbound interceptor) writes

- INFO  ``step expand-sql started (expand_sql, attempt 1)``
- INFO  ``step expand-sql finished in 4.2s: changed``  (duration_s, outcome, resource)
- WARNING ``step expand-sql failed on attempt 2 after 1.0s: Unavailable: ...``
  (error_type, error, retryable, attempt)

with the run context (workflow_id, run_id, step, attempt, resource) as fields, which
``observability.logs`` puts on every JSON event. Only runbook steps (and their undos)
are logged; diagnose, notifications and soak samples are not steps (see logs.step_of).

The helpers that name a step's target resource live here too; the step spans
(observability/step_spans.py) use the same ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from observability.logs import step_of

log = logging.getLogger("runbook.steps")

# The params field naming a step's target, most specific first (runbook/activity_io.py):
# verify and check-redis name several targets; the service / instance is the one read.
TARGET_FIELDS = ("health_check", "backend_service", "certificate", "display_name",
                 "instance", "service", "connector", "secrets")


def params_resource(args: Any) -> str:
    """The target a step's params name ("" when they name none)."""
    params = _as_dict(args[0]) if args else {}
    outcome = _as_dict(params.get("outcome"))
    if outcome.get("resource"):  # a compensation: CompensationInput
        return str(outcome["resource"])
    if isinstance(params.get("params"), dict):
        params = params["params"]
    for field in TARGET_FIELDS:
        value = params.get(field)
        if isinstance(value, list) and value:
            return ",".join(str(v) for v in value)
        if value:
            return str(value)
    if params.get("path"):  # probes: base_url None means the configured application URL
        return f"{params.get('base_url') or ''}{params['path']}"
    return ""


def outcome_resource(result: Any) -> str:
    """StepOutcome.resource of a step's result ("" when it has none)."""
    return str(_as_dict(result).get("resource") or "")


def error_resource(err: BaseException) -> str:
    """The resource of the checkpoint a failed step carries (it issued its change)."""
    if isinstance(err, ApplicationError):
        for detail in err.details:
            if isinstance(detail, dict) and "before" in detail and detail.get("resource"):
                return str(detail["resource"])
    return ""


def outcome_text(result: Any) -> str:
    outcome = _as_dict(result)
    if "changed" not in outcome:
        return "done"
    return "changed" if outcome["changed"] else "unchanged"


def error_fields(err: BaseException) -> dict[str, Any]:
    if isinstance(err, asyncio.CancelledError):
        return {"error_type": "Cancelled", "error": "cancelled", "retryable": False}
    if isinstance(err, ApplicationError):
        return {"error_type": err.type or type(err).__name__, "error": err.message,
                "retryable": not err.non_retryable}
    return {"error_type": type(err).__name__, "error": str(err), "retryable": True}


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value if isinstance(value, dict) else {}


class StepLogInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _LogStep(next)


class _LogStep(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        step = step_of(info.activity_id)
        if step is None:
            return await super().execute_activity(input)
        fields: dict[str, Any] = {"step": step, "attempt": info.attempt,
                                  "activity": info.activity_type,
                                  "resource": params_resource(input.args)}
        log.info("step %s started (%s, attempt %d)", step, info.activity_type, info.attempt,
                 extra=fields)
        started = time.monotonic()
        try:
            result = await super().execute_activity(input)
        except BaseException as err:
            if not isinstance(err, (Exception, asyncio.CancelledError)):
                raise  # interpreter exit: nothing to report
            failed = {**fields, **error_fields(err), "duration_s": _since(started),
                      "resource": error_resource(err) or fields["resource"]}
            log.warning("step %s failed on attempt %d after %.1fs: %s: %s (%s)", step,
                        info.attempt, failed["duration_s"], failed["error_type"],
                        failed["error"],
                        "retryable" if failed["retryable"] else "not retryable",
                        extra=failed)
            raise
        done = {**fields, "duration_s": _since(started), "outcome": outcome_text(result),
                "resource": outcome_resource(result) or fields["resource"]}
        log.info("step %s finished in %.1fs: %s", step, done["duration_s"], done["outcome"],
                 extra=done)
        return result


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
