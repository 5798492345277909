"""OpenTelemetry tracing through temporalio.contrib.opentelemetry.

Off unless an OTLP endpoint is configured (the standard OTEL_EXPORTER_OTLP_ENDPOINT, or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): then the process gets a TracerProvider exporting
over OTLP/HTTP in batches, named by OTEL_SERVICE_NAME or the caller's service name.
Without one the API's no-op provider stays: spans cost nothing and go nowhere.

Trace context crosses Temporal in headers: ``tracing_interceptors()`` on the client
(``runbook start``, the worker) puts the client's span on the workflow start, the
workflow's on each activity, and ``observability.step_spans`` (in the same list, so a
worker built on the client gets both, in the right order) adds a span per step beneath
the SDK's RunActivity span.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.contrib.opentelemetry import TracingInterceptor

ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_SDK_DISABLED = "OTEL_SDK_DISABLED"

log = logging.getLogger(__name__)


class TracingConfigError(ValueError):
    """A tracing setting from the environment that cannot be used."""


class Tracing:
    """What ``configure_tracing`` installed; ``shutdown()`` at exit sends the spans
    still batched (a process that leaves with os._exit must call it first)."""

    def __init__(self, provider: TracerProvider | None, endpoint: str = "") -> None:
        self.provider = provider
        self.endpoint = endpoint

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def force_flush(self, timeout_ms: int = 5000) -> None:
        if self.provider is not None:
            self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def configure_tracing(service_name: str, env: Mapping[str, str] | None = None) -> Tracing:
    """Install the process's tracer provider (OTLP export when configured)."""
    env = os.environ if env is None else env
    var, endpoint = otlp_endpoint(env)
    if not endpoint or env.get(ENV_SDK_DISABLED, "").strip().lower() == "true":
        return Tracing(None)
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TracingConfigError(f"{var}={endpoint!r} is not an OTLP/HTTP endpoint: give a "
                                 "URL such as http://otel-collector:4318")
    # Imported only when used: the exporter pulls in protobuf and requests.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    name = env.get(ENV_SERVICE_NAME) or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    # The exporter reads the endpoint (adding /v1/traces to the generic one), headers
    # and timeouts from the standard OTEL_EXPORTER_OTLP_* variables itself.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    # Scheme, host and port only: never credentials a URL may carry.
    shown = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    log.info("tracing: service %s exporting spans over OTLP/HTTP to %s", name, shown)
    return Tracing(provider, endpoint)


def otlp_endpoint(env: Mapping[str, str]) -> tuple[str, str]:
    """(variable, value) of the configured trace endpoint; the traces one wins."""
    for var in (ENV_OTLP_TRACES_ENDPOINT, ENV_OTLP_ENDPOINT):
        value = env.get(var, "").strip()
        if value:
            return var, value
    return ENV_OTLP_ENDPOINT, ""


def tracing_interceptors(tracer: trace.Tracer | None = None) -> list:
    """Client interceptors: the worker built on the client inherits them, the SDK's
    tracing first, then the step spans inside it (their parent is its RunActivity span).
    ``tracer``: default the global provider's, resolved per span (a test passes its own)."""
    from observability.step_spans import StepSpanInterceptor

    return [TracingInterceptor(tracer), StepSpanInterceptor(tracer)]
