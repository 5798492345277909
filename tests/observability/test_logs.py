"""Structured logs: JSON events with the run context, step and mutation events, quiet
HTTP chatter, and a clear error for a bad setting."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections import Counter

import httpx
import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from activities.mutation import Mutation
from observability.logs import LogConfigError, configure_logging
from observability.step_logs import StepLogInterceptor
from runbook.status import RunState, StepStatus
from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import FAST_SOAK, GATES, approve_when_pending, finished, new_queue, \
    start, status
from worker import build_worker

CONTEXT = ("workflow_id", "run_id", "step", "attempt", "resource")


class Logs:
    """The root logger configured as a service would, into a buffer; restored after."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def configure(self, **options) -> None:
        self.buffer.seek(0)
        self.buffer.truncate()
        configure_logging("test-service", stream=self.buffer, **options)

    def lines(self) -> list[str]:
        return self.buffer.getvalue().splitlines()

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.lines()]


@pytest.fixture
def logs(monkeypatch):
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.delenv("REMEDIATION_LOG_FORMAT", raising=False)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield Logs()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def in_step(step: str = "expand-sql", attempt: int = 3) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_id=step, activity_type="expand_sql",
                                   attempt=attempt, workflow_id="wf-1", workflow_run_id="run-1")
    return env


def test_json_events_carry_the_service_and_the_run_context(logs):
    logs.configure(fmt="json")
    logging.getLogger("plain").info("outside any run")

    def inside() -> None:
        logging.getLogger("plain").info("inside a step", extra={"resource": "sql/db"})
        activity.logger.warning("from the SDK's activity logger")

    in_step().run(inside)
    # workflow.logger's extra, as the SDK sets it inside a workflow
    logging.getLogger("wf").info("workflow event", extra={"temporal_workflow": {
        "workflow_id": "wf-2", "run_id": "run-2", "workflow_type": "RemediationWorkflow"}})

    outside, plain, sdk, wf = logs.events()
    assert len(logs.lines()) == 4  # one event per line
    for event in (outside, plain, sdk, wf):
        assert {"timestamp", "level", "logger", "message", "service"} <= event.keys()
        assert event["service"] == "test-service"
    assert outside["level"] == "INFO" and outside["logger"] == "plain"
    assert outside["message"] == "outside any run"
    assert not set(CONTEXT) & outside.keys()
    assert {k: plain[k] for k in CONTEXT} == {"workflow_id": "wf-1", "run_id": "run-1",
                                              "step": "expand-sql", "attempt": 3,
                                              "resource": "sql/db"}
    assert sdk["level"] == "WARNING" and sdk["step"] == "expand-sql" and sdk["attempt"] == 3
    assert "temporal_activity" not in sdk  # flattened into the context fields
    assert (wf["workflow_id"], wf["run_id"]) == ("wf-2", "run-2")
    assert "temporal_workflow" not in wf


def test_an_activity_that_is_no_step_names_no_step(logs):
    logs.configure(fmt="json")
    in_step(step="7").run(lambda: logging.getLogger("x").info("a notification"))
    (event,) = logs.events()
    assert event["workflow_id"] == "wf-1" and "step" not in event


def test_text_format_is_one_readable_line_with_the_context(logs):
    logs.configure(fmt="text")
    in_step().run(lambda: logging.getLogger("activities.x").info("hello", extra={"resource": "r"}))
    (line,) = logs.lines()
    assert " INFO activities.x hello [workflow_id=wf-1 run_id=run-1 step=expand-sql " \
           "attempt=3 resource=r]" in line


class _Calls(ActivityInboundInterceptor):
    """The end of the chain: runs the activity function."""

    def __init__(self) -> None:  # no next interceptor
        pass

    async def execute_activity(self, input: ExecuteActivityInput):
        return await input.fn(*input.args)


async def _through_step_logs(fn, *args):
    chain = StepLogInterceptor().intercept_activity(_Calls())
    return await chain.execute_activity(ExecuteActivityInput(fn=fn, args=args, executor=None,
                                                             headers={}))


async def test_a_step_logs_its_start_and_finish_once_each(logs):
    logs.configure(fmt="json")

    async def expand(params: dict) -> dict:
        return {"changed": True, "resource": "projects/p/instances/db", "before": {}, "after": {}}

    await in_step(attempt=1).run(_through_step_logs, expand, {"project": "p", "instance": "db"})
    started, done = logs.events()
    assert started["message"] == "step expand-sql started (expand_sql, attempt 1)"
    assert started["resource"] == "db"  # from the params, before the step ran
    assert done["message"].startswith("step expand-sql finished in ")
    assert done["outcome"] == "changed" and done["resource"] == "projects/p/instances/db"
    assert isinstance(done["duration_s"], float)
    for event in (started, done):
        assert event["level"] == "INFO"
        assert (event["workflow_id"], event["step"], event["attempt"]) == ("wf-1", "expand-sql", 1)


async def test_a_failed_step_logs_the_error_once(logs):
    logs.configure(fmt="json")

    async def expand(params: dict) -> dict:
        raise ApplicationError("409 operationInProgress", {"resource": "sql/db", "before": {}},
                               type="Conflict")

    with pytest.raises(ApplicationError):
        await in_step(attempt=2).run(_through_step_logs, expand, {"instance": "db"})
    started, failed = logs.events()
    assert started["level"] == "INFO"
    assert failed["level"] == "WARNING"
    assert failed["message"].startswith("step expand-sql failed on attempt 2 after ")
    assert (failed["error_type"], failed["error"], failed["retryable"]) == \
        ("Conflict", "409 operationInProgress", True)
    assert (failed["workflow_id"], failed["step"], failed["attempt"]) == ("wf-1", "expand-sql", 2)
    assert failed["resource"] == "sql/db"  # the checkpoint's: the change was issued


async def test_a_mutation_is_logged_at_info(logs):
    logs.configure(fmt="json")

    async def scale() -> None:
        async with Mutation("scale connector", "projects/p/connectors/c") as m:
            m.begin({"maxInstances": 3})
            m.operation_started("operations/op-1")
            m.outcome(current_before={"maxInstances": 3}, after={"maxInstances": 10})

    await in_step(step="scale-connector", attempt=2).run(scale)
    sent, changed = logs.events()
    assert sent["message"] == \
        "scale connector projects/p/connectors/c: change sent (operation operations/op-1)"
    assert changed["message"] == ("scale connector projects/p/connectors/c: "
                                  "{'maxInstances': 3} -> {'maxInstances': 10}")
    assert (changed["before"], changed["after"]) == ({"maxInstances": 3}, {"maxInstances": 10})
    for event in (sent, changed):
        assert event["level"] == "INFO" and event["logger"] == "runbook.mutations"
        assert (event["resource"], event["step"], event["attempt"], event["workflow_id"]) == \
            ("projects/p/connectors/c", "scale-connector", 2, "wf-1")


def _get_health() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=transport) as client:
        client.get("http://backend.test/health")


def test_http_client_chatter_is_debug(logs):
    logs.configure(fmt="json", level="INFO")
    _get_health()
    logging.getLogger("uvicorn.access").info("GET /health 200")
    assert logs.events() == []
    logs.configure(fmt="json", level="DEBUG")
    _get_health()
    requests = [e for e in logs.events() if e["logger"] == "httpx"]
    assert len(requests) == 1 and requests[0]["level"] == "DEBUG"
    assert "GET http://backend.test/health" in requests[0]["message"]


def test_log_level_comes_from_the_environment_unless_given(logs, monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "warning")
    logs.configure(fmt="json", default_level="DEBUG")
    logging.getLogger("x").info("hidden")
    logging.getLogger("x").warning("shown")
    assert [e["message"] for e in logs.events()] == ["shown"]


def test_a_bad_log_format_or_level_names_the_variable(logs, monkeypatch):
    monkeypatch.setenv("REMEDIATION_LOG_FORMAT", "xml")
    with pytest.raises(LogConfigError, match="REMEDIATION_LOG_FORMAT='xml' is not a log format"):
        logs.configure()
    monkeypatch.setenv("REMEDIATION_LOG_FORMAT", "json")
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    with pytest.raises(LogConfigError, match="LOG_LEVEL='chatty' is not a log level"):
        logs.configure()


async def test_a_run_logs_each_step_start_and_finish_once(time_skipping_env, logs):
    """Through the worker as production builds it (worker.build_worker)."""
    logs.configure(fmt="json")
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with build_worker(env.client, tq, cloud.activities()):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        for gate in GATES:
            await approve_when_pending(env, handle, gate)
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.SUCCEEDED
    ran = {s.id for s in st.steps if s.status == StepStatus.SUCCEEDED and s.kind != "soak"}
    steps = [e for e in logs.events() if e["logger"] == "runbook.steps"]
    assert all(e["workflow_id"] == handle.id and e["attempt"] == 1 for e in steps)
    assert Counter((e["step"], e["message"].split()[2]) for e in steps) == \
        Counter({(step, kind): 1 for step in ran for kind in ("started", "finished")})
