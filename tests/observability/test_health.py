"""The worker's /healthz and /readyz (observability/health.py), on a real ``python
worker.py`` against a real dev server that is SIGKILLed and started again.

Ready means the server lists this worker's identity polling its task queues; losing the
server makes it unready while the process stays healthy, and it is ready again once the
server is back on the same port and database.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo
from temporalio.client import Client

from gcpsim.launcher import free_port
from observability.logs import ENV_LOG_FORMAT
from observability.health import (
    ENV_HEALTH_BIND,
    POLL_FRESHNESS,
    PolledQueue,
    WorkerHealth,
    parse_bind,
    polling_problem,
)
from runbook.leases import LEASE_TASK_QUEUE
from tests.chaos.processes import DevServer, WorkerProcess
from worker import build_lease_worker

# Generous: a worker process imports the whole project and a restarted dev server takes a
# few seconds, on a machine shared with other suites.
START_TIMEOUT_S = 90.0
# The readiness check runs every 10-12 s; a server answer or a refused call is seen at the next.
CHANGE_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A dev server of this module's own, on a file database: the test kills it."""
    server = DevServer(tmp_path_factory.mktemp("temporal-health"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def worker(server, tmp_path):
    worker = WorkerProcess(tmp_path, server, None, f"health-{uuid.uuid4().hex[:8]}",
                           extra_env={ENV_HEALTH_BIND: f"127.0.0.1:{free_port()}",
                                      ENV_LOG_FORMAT: "json"})
    yield worker
    worker.kill()


def health_url(worker: WorkerProcess, path: str) -> str:
    return f"http://{worker.extra_env[ENV_HEALTH_BIND]}{path}"


async def wait_for_status(url: str, status: int, timeout_s: float,
                          worker: WorkerProcess | None = None) -> dict:
    """Poll ``url`` until it answers ``status``; its JSON body. Fails with the last
    answer (and the worker process's log, at once if it died)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last = "no answer"
    logs = worker.logs if worker else str
    async with httpx.AsyncClient(timeout=5) as http:
        while asyncio.get_running_loop().time() < deadline:
            assert worker is None or worker.alive(), f"worker exited:\n{logs()}"
            try:
                answer = await http.get(url)
                if answer.status_code == status:
                    return answer.json()
                last = f"{answer.status_code} {answer.text}"
            except httpx.TransportError as err:
                last = repr(err)
            await asyncio.sleep(0.5)
    raise AssertionError(f"{url} not {status} within {timeout_s:.0f}s; last: {last}\n{logs()}")


async def test_readyz_follows_the_server_going_away_and_coming_back(server, worker):
    worker.start()
    alive = await wait_for_status(health_url(worker, "/healthz"), 200, START_TIMEOUT_S, worker)
    assert alive["identity"] == worker.identity
    assert alive["task_queue"] == worker.task_queue
    ready = await wait_for_status(health_url(worker, "/readyz"), 200, START_TIMEOUT_S, worker)
    assert ready["status"] == "ok" and ready["identity"] == worker.identity

    await asyncio.to_thread(server.kill)
    try:
        unready = await wait_for_status(health_url(worker, "/readyz"), 503, CHANGE_TIMEOUT_S,
                                        worker)
        assert unready["reason"].startswith("server unreachable"), unready
        assert unready["checked_at"]
        async with httpx.AsyncClient(timeout=5) as http:
            still_alive = await http.get(health_url(worker, "/healthz"))
        assert still_alive.status_code == 200, still_alive.text
    finally:
        await asyncio.to_thread(server.start)

    ready_again = await wait_for_status(health_url(worker, "/readyz"), 200, START_TIMEOUT_S,
                                        worker)
    assert ready_again["reason"] == "polling"
    # Through the outage every line stayed one JSON event, the SDK core's own warnings
    # included (forwarded to Python logging), and the readiness changes were logged.
    lines = [line for line in worker.log_path.read_text().split("\n") if line.strip()]
    events = [json.loads(line) for line in lines]
    assert any(e["level"] == "WARNING" and "not ready" in e["message"] for e in events)
    assert any(e["logger"].startswith("temporalio.core") for e in events)


async def test_a_stopped_worker_is_unhealthy_and_unready(server):
    """In process, to stop one worker of several as a fatal error would."""
    client = await Client.connect(server.address)
    lease_worker = build_lease_worker(client)
    bind = f"127.0.0.1:{free_port()}"
    async with lease_worker:
        async with WorkerHealth(client, LEASE_TASK_QUEUE, bind, [lease_worker]):
            ready = await wait_for_status(f"http://{bind}/readyz", 200, START_TIMEOUT_S)
            assert ready["identity"] == client.identity
            assert ready["task_queue"] == LEASE_TASK_QUEUE
            await lease_worker.shutdown()
            for path in ("/healthz", "/readyz"):
                stopped = await wait_for_status(f"http://{bind}{path}", 503, CHANGE_TIMEOUT_S)
                assert stopped["reason"] == f"worker stopped: task queues ['{LEASE_TASK_QUEUE}']"


def busy_port_bind() -> tuple[socket.socket, str]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder, f"127.0.0.1:{holder.getsockname()[1]}"


@pytest.mark.parametrize("bind, says", [
    ("localhost", "expected host:port"),
    ("busy", "cannot listen"),
])
async def test_bad_health_bind_stops_the_worker_naming_the_variable(server, worker, bind, says):
    holder = None
    if bind == "busy":
        holder, bind = busy_port_bind()
    try:
        worker.extra_env[ENV_HEALTH_BIND] = bind
        worker.start()
        code = await asyncio.to_thread(worker.proc.wait, START_TIMEOUT_S)
    finally:
        if holder is not None:
            holder.close()
    log = worker.logs()
    assert code != 0, log
    assert f"{ENV_HEALTH_BIND}=" in log and says in log, log


# -- the verdict on the server's poller list, on real PollerInfo messages -----------------

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
QUEUE = PolledQueue("remediation", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, "7@host-a")


def poller(identity: str, age: timedelta) -> PollerInfo:
    stamp = Timestamp()
    stamp.FromDatetime(NOW - age)
    return PollerInfo(identity=identity, last_access_time=stamp)


def test_a_poll_started_within_the_window_is_ready():
    # An idle worker's newest poll started up to a long poll (~60-70 s) ago.
    assert polling_problem(QUEUE, [poller("7@host-a", timedelta(seconds=70))], NOW) is None


def test_another_workers_poll_does_not_make_this_one_ready():
    problem = polling_problem(QUEUE, [poller("8@host-b", timedelta(seconds=1))], NOW)
    assert problem and "no poller '7@host-a'" in problem and "activity task queue" in problem


def test_a_poll_older_than_the_window_is_not_ready():
    old = POLL_FRESHNESS + timedelta(seconds=5)
    problem = polling_problem(QUEUE, [poller("7@host-a", old)], NOW)
    assert problem and "was 95 s ago" in problem


@pytest.mark.parametrize("value, want", [
    ("0.0.0.0:8081", ("0.0.0.0", 8081)),
    ("[::]:8081", ("::", 8081)),
    (" 127.0.0.1:9 ", ("127.0.0.1", 9)),
])
def test_bind_parses(value, want):
    assert parse_bind(value) == want


@pytest.mark.parametrize("value", ["8081", ":8081", "host:", "host:0", "host:70000", "a:b"])
def test_malformed_bind_names_the_variable(value):
    with pytest.raises(ValueError, match=ENV_HEALTH_BIND):
        parse_bind(value)


async def test_a_failing_check_is_reported_and_the_checks_go_on(server, monkeypatch):
    """A bug in the check must not end the background checks (the pod would stay unready
    for good while liveness passes): it reads as unready, and the next check decides."""
    import observability.health as health

    real, calls = health.polling_problem, []

    def broken_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("a bug")
        return real(*args, **kwargs)

    monkeypatch.setattr(health, "polling_problem", broken_once)
    client = await Client.connect(server.address)
    lease_worker = build_lease_worker(client)
    bind = f"127.0.0.1:{free_port()}"
    async with lease_worker:
        async with WorkerHealth(client, LEASE_TASK_QUEUE, bind, [lease_worker],
                                check_interval=timedelta(seconds=0.5)) as watched:
            await wait_for_status(f"http://{bind}/readyz", 200, START_TIMEOUT_S)
            assert watched.readiness.ready and len(calls) > 1
            alive = await wait_for_status(f"http://{bind}/healthz", 200, 5)
            assert alive["reason"] == "workers running"
