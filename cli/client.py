"""Connecting to Temporal, and turning every failure into a message that says what to do."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from runbook.messages import DEFAULT_TASK_QUEUE, SA_INCIDENT, SA_PHASE, SA_STATE

START_HINT = "start it with `./dev up` or set TEMPORAL_ADDRESS (or --address)"
WORKER_HINT = ("start the worker: `./dev up` runs the whole stack, or run "
               "`python worker.py` with TEMPORAL_ADDRESS pointing at this server")


class CliError(Exception):
    """An error the user can act on: what went wrong, then what to do next."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


@dataclass
class Settings:
    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    ui_url: str = "http://localhost:8233"

    def workflow_url(self, workflow_id: str) -> str:
        return (f"{self.ui_url.rstrip('/')}/namespaces/{quote(self.namespace, safe='')}"
                f"/workflows/{quote(workflow_id, safe='')}")


def identity() -> str:
    """Recorded by the server on every start/signal/update event: the audit's 'who'."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    return f"runbook-cli:{user}@{socket.gethostname()}"


async def connect(settings: Settings) -> Client:
    try:
        return await Client.connect(
            settings.address, namespace=settings.namespace,
            data_converter=pydantic_data_converter, identity=identity(),
            connect_timeout=timedelta(seconds=5),
        )
    except Exception as err:
        raise CliError(f"cannot reach the Temporal server at {settings.address} ({_first_line(err)})",
                       START_HINT) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if "ConnectionRefused" in text or "Connection refused" in text:
        return "connection refused"
    return text.splitlines()[0][:300]


def translate_rpc(err: RPCError, settings: Settings, workflow_id: str | None = None) -> CliError:
    """Map a server error to a CliError with a next step."""
    msg = err.message or str(err)
    if err.status == RPCStatusCode.NOT_FOUND and "amespace" in msg:
        return CliError(f"namespace {settings.namespace!r} does not exist on {settings.address}",
                        "pass --namespace (or TEMPORAL_NAMESPACE) with an existing namespace")
    if err.status == RPCStatusCode.NOT_FOUND and workflow_id:
        return CliError(f"no run with id {workflow_id!r} in namespace {settings.namespace!r}",
                        "check the id with `runbook list` (ids look like remediation-1278-ab12cd)")
    lowered = msg.lower()
    if "search attribute" in lowered and any(
            k in lowered for k in ("not defined", "no mapping", "invalid search attribute", "unknown")):
        return CliError(
            f"the server does not know the runbook's search attributes ({msg})",
            "register them: `temporal operator search-attribute create --name "
            f"{SA_INCIDENT} --type Keyword --name {SA_PHASE} --type Int --name {SA_STATE} "
            "--type Keyword` (devstack does this for you)")
    if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return CliError(f"the Temporal server at {settings.address} did not answer ({msg})", START_HINT)
    return CliError(f"the Temporal server refused the request: {msg}")


async def live_pollers(client: Client, namespace: str, task_queue: str,
                       since: datetime | None = None) -> list[PollerInfo]:
    """Workers polling ``task_queue`` for workflow tasks, seen after ``since``.

    The server keeps a poller listed for minutes after its worker died, so callers that
    need a *running* worker pass ``since`` (default: seen within the last 2 minutes).
    """
    if since is None:
        since = datetime.now(timezone.utc) - timedelta(minutes=2)
    resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=namespace, task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
    # Clock skew between this machine and the server: allow a few seconds.
    cutoff = since - timedelta(seconds=5)
    return [p for p in resp.pollers
            if p.last_access_time.ToDatetime(tzinfo=timezone.utc) >= cutoff]


async def require_worker(client: Client, settings: Settings) -> None:
    """Fail fast instead of blocking forever on a plan or an update nobody will process."""
    try:
        pollers = await live_pollers(client, settings.namespace, settings.task_queue)
    except RPCError as err:
        raise translate_rpc(err, settings) from err
    if not pollers:
        raise CliError(f"no worker is polling task queue {settings.task_queue!r} on "
                       f"{settings.address}", WORKER_HINT)
