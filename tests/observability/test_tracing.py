"""Traces: one span per step attempt, carrying its resource, in the trace of the start.

The tracer is the test's own (an in-memory exporter on a private TracerProvider), handed
to the interceptors; the process's global provider is never touched.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from observability.step_spans import STEP_SPAN_PREFIX
from observability.tracing import TracingConfigError, configure_tracing, tracing_interceptors
from runbook.messages import WORKFLOW_TYPE
from runbook.status import RemediationReport, RunState, StepStatus
from tests.cli.cli_process import cli_env, run_cli
from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import (
    FAST_SOAK,
    GATES,
    STARTED_RUNS,
    approve_when_pending,
    finished,
    new_queue,
    status,
)
from worker import build_worker


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


async def test_a_run_has_one_span_per_step_attempt_in_the_trace_of_its_start(
        time_skipping_env, spans):
    tracer, exporter = spans
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    # A retryable failure on the first attempt: its span must say ERROR, the retry's OK.
    cloud.failures["expand-sql"] = [ApplicationError("409 operationInProgress", type="Conflict")]
    client = Client(**{**env.client.config(), "interceptors": tracing_interceptors(tracer)})
    async with build_worker(client, tq, cloud.activities()):
        with tracer.start_as_current_span("runbook start") as start_span:
            handle = await client.start_workflow(
                WORKFLOW_TYPE, {"soak": FAST_SOAK}, id=f"wf-trace-{tq}", task_queue=tq,
                result_type=RemediationReport)
        STARTED_RUNS.append(handle)
        for gate in GATES:
            await approve_when_pending(env, handle, gate)
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.SUCCEEDED

    finished_spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished_spans}
    step_spans = [s for s in finished_spans if s.name.startswith(STEP_SPAN_PREFIX)]
    # Every step that ran as one activity (the soak is a series of samples, not one).
    ran = {s.id: s for s in st.steps if s.status == StepStatus.SUCCEEDED and s.kind != "soak"}
    assert len(ran) > 15
    assert Counter(s.attributes["runbook.step"] for s in step_spans) == \
        {sid: rec.attempts for sid, rec in ran.items()}
    assert ran["expand-sql"].attempts == 2
    trace_id = start_span.get_span_context().trace_id
    for span in step_spans:
        step = span.attributes["runbook.step"]
        assert span.name == f"step {step}"
        assert span.context.trace_id == trace_id, step
        assert span.attributes["runbook.resource"], step
        assert span.attributes["runbook.workflow_id"] == handle.id
        assert span.attributes["runbook.run_id"] == handle.result_run_id
        assert span.attributes["runbook.activity"] == ran[step].activity
        parent = by_id[span.parent.span_id]
        assert parent.name == f"RunActivity:{ran[step].activity}", (step, parent.name)
    # The outcome's full name wins over the short one in the params.
    resources = {s.attributes["runbook.step"]: s.attributes["runbook.resource"] for s in step_spans}
    assert resources["scale-connector"] == "connector/staging-connector"
    attempts = sorted((s for s in step_spans if s.attributes["runbook.step"] == "expand-sql"),
                      key=lambda s: s.attributes["runbook.attempt"])
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.UNSET]
    assert "Conflict" in attempts[0].status.description or \
        "409" in attempts[0].status.description
    assert [e.name for e in attempts[0].events] == ["exception"]


def test_tracing_is_off_without_an_endpoint():
    assert not configure_tracing("svc", env={}).enabled


def test_a_malformed_endpoint_names_the_variable():
    with pytest.raises(TracingConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        configure_tracing("svc", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
    with pytest.raises(TracingConfigError, match="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        configure_tracing("svc", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://ok:4318",
                                      "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://x"})


class Collector:
    """An OTLP/HTTP trace receiver on a free local port: what a collector is sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.paths.append(self.path)
                received.requests.append(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[tuple[str, str, object]]:
        """(service.name, span name, span) of everything received."""
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    found += [(attrs.get("service.name"), span.name, span) for span in scope.spans]
        return found


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.server.shutdown()


def test_runbook_start_exports_its_span_over_otlp(collector, tmp_path):
    """The CLI configures tracing, wraps `runbook start` in a span and sends it before it
    exits (it leaves with os._exit). No server here: the start fails, and says so."""
    env = cli_env(tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
                             "TEMPORAL_ADDRESS": "127.0.0.1:1", "OTEL_SERVICE_NAME": ""})
    result = run_cli(["start", "--incident", "INC-7"], env, timeout=60)
    assert result.code == 1 and "cannot reach the Temporal server" in result.err
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    (span,) = [span for service, name, span in collector.spans() if name == "runbook start"]
    assert {s for s, _, _ in collector.spans()} == {"runbook-cli"}
    assert {a.key: a.value.string_value for a in span.attributes}["runbook.incident"] == "INC-7"
    assert span.status.code == span.status.STATUS_CODE_ERROR


def test_a_bad_endpoint_stops_the_cli_with_the_variable_named(tmp_path):
    result = run_cli(["list"], cli_env(tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector"}))
    assert result.code == 2
    assert "OTEL_EXPORTER_OTLP_ENDPOINT='collector' is not an OTLP/HTTP endpoint" in result.err


def test_every_command_is_a_span_naming_its_run(collector, tmp_path):
    """Acting on a run (here `runbook status`) heads its own trace, with the run's id."""
    env = cli_env(tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
                             "TEMPORAL_ADDRESS": "127.0.0.1:1", "OTEL_SERVICE_NAME": ""})
    result = run_cli(["status", "remediation-INC-7-abc"], env, timeout=60)
    assert result.code == 1 and "cannot reach the Temporal server" in result.err
    (span,) = [span for _, name, span in collector.spans() if name == "runbook status"]
    attributes = {a.key: a.value.string_value for a in span.attributes}
    assert attributes["runbook.workflow_id"] == "remediation-INC-7-abc"
