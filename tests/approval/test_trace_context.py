"""One trace across the approval service: the CLI's span -> its HTTP request (W3C
traceparent) -> the service's server span -> ``approval <action>`` -> the Temporal call
the ActionSender makes -> the worker's handling of it.

Everything real but the process boundaries: the CLI's ServiceClient (sync httpx, run in
a thread as the CLI runs it), the service app served by uvicorn on a free port in this
event loop, the real ActionSender on the real dev server. The spans go to an in-memory
exporter on a private TracerProvider handed to each part; the global one is untouched.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from approval.__main__ import build_verifier
from approval.actions import ActionSender
from approval.config import ServiceSettings
from approval.service import create_app
from cli.client import CliError
from cli.service_client import ServiceClient
from observability.tracing import tracing_interceptors
from runbook import messages as m
from runbook.envelope import write_keypair

KID = "trace-1"


@dataclass
class Traced:
    """The service on a free port, and what every part of the path exported."""

    url: str
    provider: TracerProvider
    exporter: InMemorySpanExporter
    client: Client  # the sender's Temporal client (tracing interceptors, the test's tracer)
    task_queue: str

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, (name, [s.name for s in self.spans()])
        return found[0]

    def parent_of(self, span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, f"{span.name} has no parent"
        by_id = {s.context.span_id: s for s in self.spans()}
        return by_id[span.parent.span_id]

    def token(self, user: str) -> str:
        with ServiceClient(self.url, tracer_provider=self.provider) as anonymous:
            return anonymous.dev_token(user)["id_token"]


@pytest.fixture
async def traced(dev_server_env, tmp_path) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    write_keypair(tmp_path / "signing.pem", tmp_path / "public.json", KID)
    settings = ServiceSettings.from_env({
        "RUNBOOK_DEV_ISSUER": "1", "RUNBOOK_APPROVAL_PUBLIC_URL": "http://approval.test",
        "RUNBOOK_APPROVAL_SIGNING_KEY_FILE": str(tmp_path / "signing.pem"),
        "RUNBOOK_APPROVAL_SIGNING_KID": KID,
        "TEMPORAL_CONFIG_FILE": str(tmp_path / "no-profile.toml")})
    client = Client(**{**dev_server_env.client.config(),
                       "interceptors": tracing_interceptors(tracer)})
    task_queue = f"trace-hop-{uuid.uuid4()}"
    sender = ActionSender(client, settings.load_signer(), task_queue=task_queue, tracer=tracer)
    verifier, routers = build_verifier(settings)
    app = create_app(settings, sender, verifier, extra_routers=routers, tracer_provider=provider)
    # In this loop, as the session's Temporal client is bound to it; the CLI side calls
    # from a thread (asyncio.to_thread), which carries the current span along.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and not serving.done(), "the service did not start"
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Traced(f"http://127.0.0.1:{port}", provider, exporter, client, task_queue)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
        provider.shutdown()


def assert_hop(traced: Traced, cli_span: ReadableSpan, action: str, path: str) -> ReadableSpan:
    """CLI span -> httpx client span -> service server span -> ``approval <action>``, all
    in the CLI span's trace; returns the action span."""
    span = traced.named(f"approval {action}")
    request = traced.parent_of(span)
    assert request.kind == SpanKind.SERVER and request.name == f"POST {path}"
    outgoing = traced.parent_of(request)
    assert outgoing.kind == SpanKind.CLIENT and outgoing.name == "POST"
    assert traced.parent_of(outgoing).context.span_id == cli_span.context.span_id
    assert span.context.trace_id == cli_span.context.trace_id
    return span


def assert_no_token_recorded(traced: Traced, token: str) -> None:
    for span in traced.spans():
        values = [*span.attributes.values(), *(v for e in span.events for v in e.attributes.values())]
        assert not any(token in str(v) for v in values), span.name


async def test_a_start_through_the_service_continues_the_cli_trace(traced):
    token = await asyncio.to_thread(traced.token, "carol")
    tracer = traced.provider.get_tracer("runbook-cli")

    def runbook_start() -> tuple[ReadableSpan, dict]:
        with tracer.start_as_current_span("runbook start") as span:
            with ServiceClient(traced.url, token, tracer_provider=traced.provider) as service:
                return span, service.start({"incident_id": "88"}, None)

    cli_span, started = await asyncio.to_thread(runbook_start)
    wid = started["workflow_id"]
    handle = traced.client.get_workflow_handle(wid)
    try:
        action = assert_hop(traced, cli_span, "start", "/v1/runs")
        assert dict(action.attributes) == {
            "runbook.action": "start", "runbook.workflow_id": wid, "runbook.incident": "88",
            "runbook.issuer_kind": "dev", "runbook.via": "cli"}
        start = traced.named(f"StartWorkflow:{m.WORKFLOW_TYPE}")
        assert traced.parent_of(start).context.span_id == action.context.span_id
        assert start.context.trace_id == cli_span.context.trace_id
        # The context went into the run itself, for the worker to continue.
        history = await handle.fetch_history()
        header = history.events[0].workflow_execution_started_event_attributes.header
        assert "_tracer-data" in header.fields
        assert_no_token_recorded(traced, token)
    finally:
        await handle.terminate("trace test done")


@workflow.defn(name="TraceHopProbe")
class TraceHopProbe:
    """A run that takes ``pause`` updates: the Temporal end of the hop, without a runbook
    (the update's envelope checks are the runbook's, tested elsewhere)."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)

    @workflow.update(name=m.UPDATE_PAUSE)
    async def pause(self, payload: dict) -> dict:
        self.done = True
        return {"held": True, "by": payload["by"]}


async def test_an_action_and_its_update_continue_the_cli_trace(traced):
    token = await asyncio.to_thread(traced.token, "dave")
    wid = f"trace-hop-{uuid.uuid4()}"
    async with Worker(traced.client, task_queue=traced.task_queue, workflows=[TraceHopProbe],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        handle = await traced.client.start_workflow(TraceHopProbe.run, id=wid,
                                                    task_queue=traced.task_queue)
        tracer = traced.provider.get_tracer("runbook-cli")

        def runbook_pause() -> tuple[ReadableSpan, dict]:
            with tracer.start_as_current_span("runbook pause") as span:
                with ServiceClient(traced.url, token, tracer_provider=traced.provider) as service:
                    return span, service.act(wid, "pause", {"reason": "look first"})

        cli_span, answer = await asyncio.to_thread(runbook_pause)
        await handle.result()
    assert answer == {"held": True, "by": "dave", "identity": "dave"}
    action = assert_hop(traced, cli_span, "pause", "/v1/runs/{workflow_id}/pause")
    assert action.attributes["runbook.workflow_id"] == wid
    update = traced.named(f"StartWorkflowUpdate:{m.UPDATE_PAUSE}")
    assert traced.parent_of(update).context.span_id == action.context.span_id
    # The worker's handling of the update: in the run's trace (the SDK's design), linked
    # to the update's span, so the person's action leads to it.
    handled = traced.named(f"HandleUpdate:{m.UPDATE_PAUSE}")
    assert [(link.context.trace_id, link.context.span_id) for link in handled.links] == \
        [(cli_span.context.trace_id, update.context.span_id)]
    assert_no_token_recorded(traced, token)


async def test_a_refused_action_ends_its_span_in_error_with_the_reason(traced):
    token = await asyncio.to_thread(traced.token, "erin")
    wid = f"remediation-1-{uuid.uuid4().hex[:6]}"
    tracer = traced.provider.get_tracer("runbook-cli")

    def runbook_approve() -> tuple[ReadableSpan, CliError]:
        with tracer.start_as_current_span("runbook approve") as span:
            with ServiceClient(traced.url, token, tracer_provider=traced.provider) as service:
                with pytest.raises(CliError) as refused:
                    service.act(wid, "approve", {"gate": "phase-1", "plan_digest": "d1"})
                return span, refused.value

    cli_span, refused = await asyncio.to_thread(runbook_approve)
    assert f"knows no run {wid!r}" in refused.message
    action = assert_hop(traced, cli_span, "approve", "/v1/runs/{workflow_id}/approve")
    assert (action.attributes["runbook.gate"], action.attributes["runbook.refused_status"]) == \
        ("phase-1", 404)
    assert action.status.status_code == StatusCode.ERROR
    assert action.status.description == f"refused (404): no run {wid}"
    assert_no_token_recorded(traced, token)
