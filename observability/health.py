"""The worker's health endpoints: ``/healthz`` (the process and its workers run) and
``/readyz`` (connected to Temporal and polling its task queues), for Kubernetes probes,
compose healthchecks and load balancers.

    async with WorkerHealth(client, task_queue, bind, [worker, lease_worker]):
        ...

Readiness is decided by the server, not by the worker's own belief: every few seconds
a background check asks the frontend (``DescribeTaskQueue``) who polls each worker's
task queue, and the worker is ready when that call answers and lists this worker's
identity with a recent poll on every queue type the worker serves. A probe then only
reads the latest verdict, so a burst of probes never becomes a burst of RPCs.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Sequence

from aiohttp import web
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from observability import bind_address

ENV_HEALTH_BIND = "REMEDIATION_HEALTH_BIND"

# How often the background check asks the server (two DescribeTaskQueue calls per task
# queue); a probe sees a verdict this old at most, plus one call's timeout. Every replica
# asks, so the interval is stretched by a random part of up to CHECK_JITTER: fifty workers
# started together do not hit the frontend (or a Cloud namespace's rate limit) in step.
CHECK_INTERVAL = timedelta(seconds=10)
CHECK_JITTER = 0.2
DESCRIBE_TIMEOUT = timedelta(seconds=5)
# How recent this worker's last poll must be. The server stamps a poller's
# last_access_time when a long poll *starts*; an idle worker's poll then waits up to the
# server's long-poll expiry (60 s by default, the SDK's client-side poll timeout is 70 s)
# before the next one starts. So a healthy idle worker's newest poll can be ~70 s old:
# 90 s keeps it ready through a full idle poll with margin for a slow reconnect and
# moderate clock skew, while a worker whose pollers stopped turns unready within 90 s.
# (The server itself keeps a gone poller listed for minutes, so presence alone says
# little.) Losing the server is seen sooner: the check's own call fails at once.
POLL_FRESHNESS = timedelta(seconds=90)

# RPC statuses that mean no server answered (down, restarting, network), not a refusal.
UNREACHABLE = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED})

log = logging.getLogger(__name__)


def parse_bind(value: str) -> tuple[str, int]:
    return bind_address.parse_bind(value, ENV_HEALTH_BIND)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str
    checked_at: datetime | None


NOT_CHECKED = Readiness(False, "not checked yet", None)


@dataclass(frozen=True)
class PolledQueue:
    """One task queue and type a worker must be seen polling."""
    task_queue: str
    kind: TaskQueueType.ValueType
    identity: str

    @property
    def label(self) -> str:
        kind = "workflow" if self.kind == TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW else "activity"
        return f"{kind} task queue {self.task_queue!r}"


def worker_identity(client: Client, worker: Worker) -> str:
    """The identity a worker polls under: its own if set, else its client's."""
    return worker.config().get("identity") or client.identity


def polled_queues(client: Client, workers: Iterable[Worker]) -> list[PolledQueue]:
    """What the workers poll: a workflow queue if they host workflows, an activity queue
    if they host activities."""
    queues = []
    for worker in workers:
        config, identity = worker.config(), worker_identity(client, worker)
        if config.get("workflows"):
            queues.append(PolledQueue(worker.task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                                      identity))
        if config.get("activities"):
            queues.append(PolledQueue(worker.task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                                      identity))
    return queues


def polling_problem(queue: PolledQueue, pollers: Sequence[PollerInfo], now: datetime,
                    freshness: timedelta = POLL_FRESHNESS) -> str | None:
    """Why the server's poller list does not show ``queue`` polled recently, or None."""
    mine = [p for p in pollers if p.identity == queue.identity]
    if not mine:
        return f"not polling: the server lists no poller {queue.identity!r} on the {queue.label}"
    last = max(p.last_access_time.ToDatetime(timezone.utc) for p in mine)
    age = now - last
    if age > freshness:
        return (f"not polling: last poll of the {queue.label} by {queue.identity!r} was "
                f"{age.total_seconds():.0f} s ago (limit {freshness.total_seconds():.0f} s)")
    return None


def stopped_workers(workers: Iterable[Worker]) -> list[str]:
    return [w.task_queue for w in workers if not w.is_running]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class WorkerHealth:
    """The health server of one worker process; an async context manager that serves
    while entered and stops (server and background check) on exit."""

    def __init__(self, client: Client, task_queue: str, bind: str, workers: list[Worker],
                 clock: Callable[[], datetime] = utc_now,
                 check_interval: timedelta = CHECK_INTERVAL) -> None:
        self.host, self.port = parse_bind(bind)
        self.client, self.task_queue, self.workers = client, task_queue, workers
        main = next((w for w in workers if w.task_queue == task_queue), None)
        self.identity = worker_identity(client, main) if main else client.identity
        self.queues = polled_queues(client, workers)
        self.clock, self.check_interval = clock, check_interval
        self.readiness = NOT_CHECKED
        self._runner: web.AppRunner | None = None
        self._checker: asyncio.Task | None = None

    # -- the verdicts ----------------------------------------------------------------------

    async def check(self) -> Readiness:
        """Ask the server whether every queue this process serves is polled by it."""
        stopped = stopped_workers(self.workers)
        if stopped:
            return Readiness(False, f"worker stopped: task queues {stopped}", self.clock())
        try:
            answers = await asyncio.gather(*(self._describe(q) for q in self.queues))
        except RPCError as err:
            # An answer that refuses (wrong namespace, no permission) is not an outage:
            # say which, so the operator looks at the right thing.
            what = ("server unreachable" if err.status in UNREACHABLE
                    else "server refused the check")
            return Readiness(False, f"{what}: {err.status.name}: {err.message}", self.clock())
        except Exception as err:  # noqa: BLE001 - e.g. a broken connection: no answer at all
            return Readiness(False, f"server unreachable: {type(err).__name__}: {err}",
                             self.clock())
        now = self.clock()
        for queue, pollers in zip(self.queues, answers):
            problem = polling_problem(queue, pollers, now)
            if problem:
                return Readiness(False, problem, now)
        return Readiness(True, "polling", now)

    async def _describe(self, queue: PolledQueue) -> Sequence[PollerInfo]:
        response = await self.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=self.client.namespace,
                                     task_queue=TaskQueue(name=queue.task_queue),
                                     task_queue_type=queue.kind),
            retry=False, timeout=DESCRIBE_TIMEOUT)
        return response.pollers

    async def _check_forever(self) -> None:
        while True:
            try:
                verdict = await self.check()
            except Exception as err:  # noqa: BLE001 - a bug here must not end the checks
                log.exception("readiness check failed")
                verdict = Readiness(False, f"readiness check failed: {type(err).__name__}: {err}",
                                    self.clock())
            if verdict.ready != self.readiness.ready:
                # Only transitions are logged (not a start-up's first "no poller yet"): a
                # check every few seconds must not flood the log; /readyz has the detail.
                log.log(logging.INFO if verdict.ready else logging.WARNING,
                        "readiness: %s (%s)", "ready" if verdict.ready else "not ready",
                        verdict.reason)
            self.readiness = verdict
            await asyncio.sleep(self.check_interval.total_seconds()
                                * (1 + random.uniform(0, CHECK_JITTER)))

    # -- HTTP --------------------------------------------------------------------------------

    def _body(self, ok: bool, reason: str, checked_at: datetime | None) -> web.Response:
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "task_queue": self.task_queue,
             "identity": self.identity, "reason": reason,
             "checked_at": checked_at.isoformat() if checked_at else None},
            status=200 if ok else 503)

    async def healthz(self, _request: web.Request) -> web.Response:
        stopped = stopped_workers(self.workers)
        if stopped:
            return self._body(False, f"worker stopped: task queues {stopped}", self.clock())
        if self._checker is not None and self._checker.done():
            # Unready for good otherwise, with nothing to restart the process: let liveness.
            return self._body(False, "readiness check not running", self.clock())
        return self._body(True, "workers running", self.clock())

    async def readyz(self, _request: web.Request) -> web.Response:
        # A stopped worker is seen at once, not at the next background check.
        stopped = stopped_workers(self.workers)
        if stopped:
            return self._body(False, f"worker stopped: task queues {stopped}", self.clock())
        if self._checker is None or self._checker.done():
            # A dead check would otherwise leave its last verdict standing forever.
            return self._body(False, "readiness check not running", self.clock())
        verdict = self.readiness
        return self._body(verdict.ready, verdict.reason, verdict.checked_at)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app

    async def __aenter__(self) -> "WorkerHealth":
        # No access log: probes every few seconds would drown the worker's own lines.
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError as err:
            await self._runner.cleanup()
            raise RuntimeError(f"{ENV_HEALTH_BIND}={self.host}:{self.port}: cannot listen: "
                               f"{err.strerror or err}") from err
        self._checker = asyncio.create_task(self._check_forever(), name="readiness-check")
        log.info("health endpoints on http://%s:%d (/healthz, /readyz)", self.host, self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._checker is not None:
            self._checker.cancel()
            try:
                await self._checker
            except asyncio.CancelledError:
                pass
        if self._runner is not None:
            await self._runner.cleanup()
