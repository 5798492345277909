"""Fixtures: one local GCP simulator per session, a fresh world per test.

The activities run with their real Google clients (REST transport / discovery) against
the simulator; nothing in the Google libraries is mocked. ``ActivityEnvironment`` gives
them an activity context with heartbeats, attempts and cancellation.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.clients import GcpClients
from activities.settings import Settings

# Simulated seconds per real second: Cloud Run rollouts (45 s) and SQL tier changes
# (300 s) finish in well under two seconds, certificate provisioning (600 s) in a few.
SPEED = 400.0
POLL_S = 0.1


class SimAdmin:
    """The simulator's admin API (``/_sim/...``): state, mutation log, faults, clock."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.http = httpx.Client(base_url=endpoint, timeout=30)

    def reset(self, world: str | None = None) -> None:
        """A built-in world: ``serverless`` (the default: Cloud Run behind serverless NEGs)
        or ``instance-group`` (backend services on instance groups with health checks)."""
        self.http.delete("/_sim/faults").raise_for_status()
        if world is None:
            self.http.post("/_sim/reset").raise_for_status()
        else:
            self.http.post("/_sim/reset", json={"world": world}).raise_for_status()

    def load(self, state: dict[str, Any]) -> None:
        """A custom world: ``state`` in the shape of :meth:`state` (e.g. one read and edited)."""
        self.http.delete("/_sim/faults").raise_for_status()
        self.http.post("/_sim/reset", json=state).raise_for_status()

    def edit(self, change) -> None:
        """Load the current world as changed in place by ``change(state)``."""
        state = self.state()
        change(state)
        self.load(state)

    def state(self) -> dict[str, Any]:
        r = self.http.get("/_sim/state")
        r.raise_for_status()
        return r.json()

    def mutations(self, **match: str) -> list[dict[str, Any]]:
        r = self.http.get("/_sim/mutations")
        r.raise_for_status()
        out = r.json()["mutations"]
        return [m for m in out if all(v in str(m.get(k, "")) for k, v in match.items())]

    def fault(self, **spec: Any) -> dict[str, Any]:
        r = self.http.post("/_sim/faults", json=spec)
        r.raise_for_status()
        return r.json()

    def faults(self) -> list[dict[str, Any]]:
        r = self.http.get("/_sim/faults")
        r.raise_for_status()
        body = r.json()
        return body.get("faults", body) if isinstance(body, dict) else body

    def clear_faults(self) -> None:
        self.http.delete("/_sim/faults").raise_for_status()

    def advance(self, seconds: float) -> None:
        self.http.post("/_sim/clock/advance", json={"seconds": seconds}).raise_for_status()


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory):
    from gcpsim.launcher import start_simulator

    with start_simulator(data_dir=tmp_path_factory.mktemp("gcpsim"), speed=SPEED) as sim:
        yield sim


@pytest.fixture
def sim(simulator) -> SimAdmin:
    admin = SimAdmin(simulator.endpoint)
    admin.reset()
    yield admin
    admin.http.close()


@pytest.fixture
def settings(simulator) -> Settings:
    return Settings(backend="sim", gcp_endpoint=simulator.endpoint, poll_interval_s=POLL_S)


@pytest.fixture(scope="session")
def _session_clients(simulator) -> GcpClients:
    # One factory per session: GAPIC clients are cached inside it, like in a worker.
    return GcpClients(Settings(backend="sim", gcp_endpoint=simulator.endpoint,
                               poll_interval_s=POLL_S))


@pytest.fixture
def clients(_session_clients: GcpClients, sim: SimAdmin) -> GcpClients:
    return _session_clients


class Runner:
    """Runs one activity attempt in an ActivityEnvironment and keeps its heartbeats."""

    def __init__(self, attempt: int = 1, heartbeat_details: list[Any] | None = None,
                 activity_id: str = "step-1") -> None:
        self.env = ActivityEnvironment()
        self.env.info = dataclasses.replace(
            self.env.info, attempt=attempt, heartbeat_details=list(heartbeat_details or []),
            activity_id=activity_id, workflow_id="wf-test", workflow_run_id="run-test")
        self.heartbeats: list[tuple[Any, ...]] = []
        self.env.on_heartbeat = lambda *details: self.heartbeats.append(details)

    async def __call__(self, fn: Any, *args: Any) -> Any:
        return await self.env.run(fn, *args)

    def last_checkpoint(self) -> dict[str, Any] | None:
        for details in reversed(self.heartbeats):
            if details and isinstance(details[0], dict) and "before" in details[0]:
                return details[0]
        return None

    async def run_until_operation(self, fn: Any, *args: Any, timeout: float = 20) -> Any:
        """Start the activity, cancel it once it has heartbeated an in-flight operation
        (a worker dying mid-wait), and return the error it ended with."""
        task = asyncio.ensure_future(self.env.run(fn, *args))
        deadline = asyncio.get_running_loop().time() + timeout
        while not (self.last_checkpoint() or {}).get("operation"):
            if task.done() or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        self.env.cancel()
        try:
            return await task
        except BaseException as err:  # noqa: BLE001 - the test inspects it
            return err


@pytest.fixture
def runner() -> Runner:
    return Runner()


# A local receiver playing Slack, PagerDuty and a webhook (tests/activities/notify_receivers.py),
# one per test module, emptied before each test.
@pytest.fixture(scope="module")
def receiver():
    from .notify_receivers import Receiver

    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def rx(receiver):
    receiver.reset()
    return receiver
