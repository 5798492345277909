"""Connecting to Temporal, and turning every failure into a message that says what to do."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from observability.tracing import tracing_interceptors
from runbook.messages import DEFAULT_TASK_QUEUE
from runbook.temporal_connection import TemporalConnectionError, connect_options
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTE_KEYS

START_HINT = "start it with `./dev up` or set TEMPORAL_ADDRESS (or --address)"
WORKER_HINT = ("start the worker: `./dev up` runs the whole stack, or run "
               "`python worker.py` with TEMPORAL_ADDRESS pointing at this server")
# A worker is polling but the query still failed: starting another worker would not help.
QUERY_FAILED_HINT = ("a worker is polling, so the query reached it: look at the worker's log for the "
                     "error; `runbook audit ID` reads the run's history without a query")


class CliError(Exception):
    """An error the user can act on: what went wrong, then what to do next."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


# Name -> type as `temporal` spells it (Keyword, Int, KeywordList, ...), from the typed keys
# the workflow upserts, so the server is always told exactly what the workflow writes.
SEARCH_ATTRIBUTES = {k.name: k.indexed_value_type.name.title().replace("_", "")
                     for k in SEARCH_ATTRIBUTE_KEYS}


@dataclass
class Settings:
    """Where Temporal and the worker are. The defaults reach a local `./dev up`."""

    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    ui_url: str = "http://localhost:8233"

    # The variables the worker and docker-compose read too, so one environment points every
    # tool (CLI options, devstack's probe, the worker devstack starts) at the same place.
    ENV = {"address": "TEMPORAL_ADDRESS", "namespace": "TEMPORAL_NAMESPACE",
           "task_queue": "REMEDIATION_TASK_QUEUE", "ui_url": "TEMPORAL_UI_URL"}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        # Empty counts as unset, as it does for the CLI's options (click ignores "").
        values = {field: env[var] for field, var in cls.ENV.items() if env.get(var)}
        # Unset, the server and namespace come from a TOML profile (TEMPORAL_CONFIG_FILE,
        # TEMPORAL_PROFILE) when there is one, as they do for the worker and the service.
        try:
            profile = connect_options(env)
        except TemporalConnectionError:
            profile = {}  # connect() reports it, naming the variable
        values.setdefault("address", profile.get("target_host", cls.address))
        values.setdefault("namespace", profile.get("namespace", cls.namespace))
        return cls(**values)

    def workflow_url(self, workflow_id: str) -> str:
        return (f"{self.ui_url.rstrip('/')}/namespaces/{quote(self.namespace, safe='')}"
                f"/workflows/{quote(workflow_id, safe='')}")


def login_name() -> str:
    """The local login, or "" where there is none (some containers have no passwd entry)."""
    try:
        return getpass.getuser()
    except Exception:
        return ""


def identity() -> str:
    """Recorded by the server on every start/signal/update event: the audit's 'who'."""
    return f"runbook-cli:{login_name() or 'unknown'}@{socket.gethostname()}"


ENV_API_KEY = "TEMPORAL_API_KEY"
TLS_HINT = ("check --address (TEMPORAL_ADDRESS) and the TLS or API key settings "
            "(TEMPORAL_TLS_*, TEMPORAL_API_KEY); a local `./dev up` server needs neither")
CONNECTION_HINT = ("fix the variable named above; TEMPORAL_API_KEY, TEMPORAL_TLS_* and "
                   "TEMPORAL_CONFIG_FILE are the `temporal` CLI's settings, read the same way")


async def connect(settings: Settings, env: Mapping[str, str] | None = None) -> Client:
    """A client for ``settings``' server and namespace (--address/--namespace or their
    variables), connected as the worker connects: TLS, a Temporal Cloud API key and gRPC
    metadata from the SDK's environment configuration (runbook/temporal_connection.py)."""
    env = os.environ if env is None else env
    try:
        options = connect_options(env) | {"target_host": settings.address,
                                          "namespace": settings.namespace}
    except TemporalConnectionError as err:
        # The SDK's message names the variable or file, not the key; redacted regardless.
        raise CliError(_redacted(str(err), env.get(ENV_API_KEY)), CONNECTION_HINT,
                       exit_code=2) from None
    try:
        return await Client.connect(
            **options, data_converter=pydantic_data_converter, identity=identity(),
            connect_timeout=timedelta(seconds=5),
            # The current span (e.g. `runbook start`'s) rides on every start, signal and
            # update to the workflow and its activities (observability/tracing.py).
            interceptors=tracing_interceptors(),
        )
    except Exception as err:
        secured = options.get("api_key") or options.get("tls")
        raise CliError(f"cannot reach the Temporal server at {settings.address} "
                       f"({_first_line(err, options.get('api_key'))})",
                       TLS_HINT if secured else START_HINT) from err


def _redacted(text: str, api_key: str | None) -> str:
    """No error should echo the API key; should one ever do, it is not printed."""
    return text.replace(api_key, "<api key>") if api_key else text


def _first_line(err: BaseException, api_key: str | None = None) -> str:
    text = _redacted(str(err).strip() or type(err).__name__, api_key)
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
            "register them: `temporal operator search-attribute create "
            + " ".join(f"--name {name} --type {kind}" for name, kind in SEARCH_ATTRIBUTES.items())
            + "` (devstack does this for you)")
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
