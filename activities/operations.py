"""Waiting on long-running operations inside an activity.

Every poll heartbeats the step's checkpoint (which names the operation), so the
workflow's heartbeat timeout sees progress, cancellation reaches the activity at the next
poll, and a retried attempt can resume waiting on the same operation instead of applying
the change again. Polls go through the clients with retries off; the period is
``Settings.poll_interval_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import errors
from activities.clients import GAPIC_TIMEOUT_S, GcpClients, execute
from activities.mutation import Mutation

T = TypeVar("T")


class PollTimeout(Exception):
    def __init__(self, what: str, waited_s: float, last: Any) -> None:
        super().__init__(f"{what}: still not done after {waited_s:.0f}s")
        self.last = last


async def poll(fetch: Callable[[], T], done: Callable[[T], bool], *, interval_s: float,
               heartbeat: Callable[[], None], what: str, timeout_s: float | None = None) -> T:
    """Call ``fetch`` in a thread until ``done``; heartbeat before every call."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        heartbeat()
        value = await asyncio.to_thread(fetch)
        if done(value):
            return value
        if timeout_s is not None and loop.time() - started >= timeout_s:
            raise PollTimeout(what, loop.time() - started, value)
        await asyncio.sleep(interval_s)


class Operations:
    """Waits for each API's operation kind; raises the mapped error if it failed."""

    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients

    @property
    def interval_s(self) -> float:
        return self.clients.settings.poll_interval_s

    async def resume(self, m: Mutation, wait: Callable[[str], Awaitable[Any]]) -> None:
        """Finish waiting on the operation an earlier attempt started (crash mid-LRO).

        If that operation failed, the earlier attempt already reported it; this attempt
        re-reads the resource and re-issues the change only if it is still needed.
        """
        name = m.pending_operation
        if not name:
            return
        try:
            await wait(name)
        except ApplicationError as err:
            activity.logger.warning("operation %s of an earlier attempt ended with %s: %s; "
                                    "re-reading %s", name, err.type, err.message, m.resource)

    async def run(self, name: str, m: Mutation) -> None:
        """A Cloud Run v2 LRO (google.longrunning.Operation via the GAPIC mixin)."""
        client = self.clients.run_services()
        op = await poll(
            lambda: client.get_operation({"name": name}, retry=None, timeout=GAPIC_TIMEOUT_S),
            lambda o: o.done, interval_s=self.interval_s, heartbeat=m.heartbeat,
            what=f"operation {name}")
        if op.HasField("error"):
            m.operation_failed(name)
            raise errors.lro_error(op.error.code, op.error.message, action=m.action,
                                   resource=m.resource, checkpoint=m.dump())
        m.operation_finished()

    async def vpcaccess(self, name: str, m: Mutation) -> dict[str, Any]:
        def fetch() -> dict[str, Any]:
            api = self.clients.discovery("vpcaccess")
            return execute(api.projects().locations().operations().get(name=name))

        op = await poll(fetch, lambda o: bool(o.get("done")), interval_s=self.interval_s,
                        heartbeat=m.heartbeat, what=f"operation {name}")
        if op.get("error"):
            m.operation_failed(name)
            err = op["error"]
            raise errors.lro_error(int(err.get("code", 2)), str(err.get("message", "")),
                                   action=m.action, resource=m.resource, checkpoint=m.dump())
        m.operation_finished()
        return op

    async def sql(self, project: str, name: str, m: Mutation) -> dict[str, Any]:
        def fetch() -> dict[str, Any]:
            api = self.clients.discovery("sqladmin")
            return execute(api.operations().get(project=project, operation=name))

        return await self._discovery_done(fetch, name, m)

    async def compute_global(self, project: str, name: str, m: Mutation) -> dict[str, Any]:
        def fetch() -> dict[str, Any]:
            api = self.clients.discovery("compute")
            return execute(api.globalOperations().get(project=project, operation=name))

        return await self._discovery_done(fetch, name, m)

    async def _discovery_done(self, fetch: Callable[[], dict[str, Any]], name: str,
                              m: Mutation) -> dict[str, Any]:
        # SQL and compute operations end as status DONE, with ``error`` when they failed.
        op = await poll(fetch, lambda o: o.get("status") == "DONE", interval_s=self.interval_s,
                        heartbeat=m.heartbeat, what=f"operation {name}")
        if not (op.get("error") or {}).get("errors"):
            m.operation_finished()
            return op
        m.operation_failed(name)
        raise errors.discovery_operation_error(op, action=m.action, resource=m.resource,
                                               checkpoint=m.dump())
        return op
