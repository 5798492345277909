"""Drive one run through real processes and kill them at points observed from outside.

What the driver looks at never comes from the worker it kills: pending activities come
from the server (``describe``), operations and the mutation log from the simulator. The
``status`` query (answered by a worker) is only used while a worker is up, with a short
timeout, to find a pending gate.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowHandle

from runbook.status import RunStatus
from tests.chaos.processes import DevServer, SimProcess, WorkerProcess
from tests.workflow.harness import approve, finished, start, status

Predicate = Callable[[], Awaitable[Any]]
# Longest wait for one kill point to be reached, or for a resumed run to move on.
POINT_TIMEOUT_S = 90.0


@dataclass
class Kill:
    point: str
    observed: Any


@dataclass
class Chaos:
    server: DevServer
    sim: SimProcess
    worker: WorkerProcess
    client: Client
    kills: list[Kill] = field(default_factory=list)
    held_gates: set[str] = field(default_factory=set)
    approved: set[str] = field(default_factory=set)
    handle: WorkflowHandle | None = None
    _approver: asyncio.Task | None = None

    # -- the run -------------------------------------------------------------------------

    async def start(self, request: dict[str, Any]) -> WorkflowHandle:
        self.handle = await start(SimpleNamespace(client=self.client), request,
                                  self.worker.task_queue)
        self._approver = asyncio.create_task(self._approve_gates())
        return self.handle

    async def _approve_gates(self) -> None:
        """Approve every gate as it opens, except held ones (released by ``release``)."""
        while True:
            st = await self.try_status()
            gate = st.pending_gate.id if st and st.pending_gate else None
            if gate and gate not in self.held_gates and gate not in self.approved:
                try:
                    await asyncio.wait_for(approve(self.handle, gate), 10)
                    self.approved.add(gate)
                except Exception:  # noqa: BLE001 - worker or server down: try again
                    pass
            await asyncio.sleep(0.2)

    def release(self, gate: str) -> None:
        self.held_gates.discard(gate)

    async def try_status(self) -> RunStatus | None:
        if not self.worker.alive():
            return None
        try:
            return await asyncio.wait_for(status(self.handle), 3)
        except Exception:  # noqa: BLE001 - a dead worker or a restarting server
            return None

    async def finish(self, timeout_s: float = 240.0):
        """The run's report once it ends, and its final status."""
        try:
            report = await asyncio.wait_for(finished(self.handle), timeout_s)
            st = await asyncio.wait_for(status(self.handle), 10)
        finally:
            self.stop_approving()
        return report, st

    def stop_approving(self) -> None:
        if self._approver is not None:
            self._approver.cancel()

    # -- observation ---------------------------------------------------------------------

    async def wait_for(self, predicate: Predicate, what: str,
                       timeout_s: float = POINT_TIMEOUT_S) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            try:
                value = await predicate()
            except Exception:  # noqa: BLE001 - a process restarting: look again
                value = None
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"kill point not reached within {timeout_s:.0f}s: {what}; "
                             f"kills so far {[k.point for k in self.kills]}")

    async def pending_activities(self) -> list[Any]:
        desc = await asyncio.wait_for(self.handle.describe(), 5)
        return [p for p in desc.raw_description.pending_activities
                if p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED]

    async def sim_admin(self, method: str, path: str, body: Any = None) -> Any:
        return await asyncio.to_thread(self.sim.admin, method, path, body)

    async def sim_operations(self, api: str) -> list[dict[str, Any]]:
        ops = (await asyncio.to_thread(self.sim.admin, "GET", "/_sim/operations"))["operations"]
        return [o for o in ops if o["api"] == api and not o["done"]]

    async def mutations(self, since: int = 0) -> list[dict[str, Any]]:
        return (await asyncio.to_thread(self.sim.admin, "GET",
                                        f"/_sim/mutations?since={since}"))["mutations"]

    async def last_seq(self) -> int:
        found = await self.mutations()
        return found[-1]["seq"] if found else 0

    def gate_pending(self, gate: str) -> Predicate:
        async def check() -> bool:
            st = await self.try_status()
            return bool(st and st.pending_gate and st.pending_gate.id == gate)
        return check

    # -- faults --------------------------------------------------------------------------

    async def kill_worker_at(self, point: str, predicate: Predicate) -> Kill:
        """SIGKILL the worker once ``predicate`` holds, then start a fresh one."""
        observed = await self.wait_for(predicate, point)
        await asyncio.to_thread(self.worker.kill)
        kill = Kill(point, observed)
        self.kills.append(kill)
        await asyncio.to_thread(self.worker.start)
        return kill

    async def restart_server_at(self, point: str, predicate: Predicate) -> Kill:
        """SIGKILL the dev server once ``predicate`` holds, start it on the same database
        and port; the worker must live through it (or the test says it did not)."""
        observed = await self.wait_for(predicate, point)
        await asyncio.to_thread(self.server.restart)
        kill = Kill(f"server: {point}", observed)
        self.kills.append(kill)
        return kill

    async def restart_sim_at(self, point: str, predicate: Predicate) -> Kill:
        """SIGKILL gcpsim once ``predicate`` holds and start it on the same data and port."""
        observed = await self.wait_for(predicate, point)
        await asyncio.to_thread(self.sim.restart)
        kill = Kill(f"simulator: {point}", observed)
        self.kills.append(kill)
        return kill
