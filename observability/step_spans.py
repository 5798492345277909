"""A span per runbook step, beneath the SDK's RunActivity span.

``StepSpanInterceptor`` (an activity inbound interceptor) opens ``step <step id>`` around
each attempt of a step (and of its undo, ``step undo-<step id>``) with the attributes a
trace search needs: runbook.step, runbook.activity, runbook.attempt, runbook.resource
(from the params first, then the outcome's or the failure checkpoint's full resource
name), runbook.workflow_id, runbook.run_id. A failed attempt ends ERROR with the
exception recorded.

It must sit inside temporalio.contrib.opentelemetry's TracingInterceptor:
``tracing.tracing_interceptors()`` lists them in that order for the client, and a worker
built on the client puts the client's worker interceptors first in its chain. The
RunActivity span, which carries the context from the workflow, is then the current span
and the step span its child.
"""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from temporalio import activity, client
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from observability.logs import step_of
from observability.step_logs import error_resource, outcome_resource, params_resource

STEP_SPAN_PREFIX = "step "


class StepSpanInterceptor(client.Interceptor, Interceptor):
    """A worker interceptor that may sit on the client (it leaves client calls alone), so
    a worker inherits it with the SDK's tracing: see tracing.tracing_interceptors.

    ``tracer``: default the global provider's, looked up when a span starts (so
    configure_tracing may run after the worker is built); a test passes its own."""

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self.tracer = tracer or trace.get_tracer(__name__)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _StepSpan(next, self.tracer)


class _StepSpan(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, tracer: trace.Tracer) -> None:
        super().__init__(next)
        self.tracer = tracer

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        step = step_of(info.activity_id)
        if step is None:
            return await super().execute_activity(input)
        attributes = {"runbook.step": step, "runbook.activity": info.activity_type,
                      "runbook.attempt": info.attempt,
                      "runbook.resource": params_resource(input.args),
                      "runbook.workflow_id": info.workflow_id or "",
                      "runbook.run_id": info.workflow_run_id or ""}
        # Status and exception are set below: the SDK's defaults would mark a cancelled
        # step OK (CancelledError is no Exception) and omit the checkpoint's resource.
        with self.tracer.start_as_current_span(
                STEP_SPAN_PREFIX + step, attributes=attributes, kind=trace.SpanKind.INTERNAL,
                record_exception=False, set_status_on_exception=False) as span:
            try:
                result = await super().execute_activity(input)
            except (Exception, asyncio.CancelledError) as err:
                if resource := error_resource(err):
                    span.set_attribute("runbook.resource", resource)
                span.record_exception(err)
                span.set_status(Status(StatusCode.ERROR, f"{type(err).__name__}: {err}"))
                raise
            if resource := outcome_resource(result):
                span.set_attribute("runbook.resource", resource)
            return result
