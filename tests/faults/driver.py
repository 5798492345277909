"""Running one fault-matrix cell: the real activities against gcpsim, through
RemediationWorkflow under the time-skipping test server.

The fault is armed by a worker interceptor the moment a target step's first attempt
starts (``CellInterceptor``), so it can only hit that step, whatever ran before it on the
same resource. The same interceptor records, for every activity attempt, which entries of
the simulator's mutation log were written while it ran (so each change can be put down to
the step or the undo that made it) and the attempt numbers the worker really saw.

The driver approves each gate as soon as it opens and otherwise moves workflow time on in
small skips (retry backoff, soak samples and phase budgets are durable timers). The test
server does not skip time while an activity runs: a hung operation is waited out in real
time, so hang cells give the target phase a short budget (its hard limit is the bound).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from activities import build_activities
from activities.failure_attempts import FailureAttemptInterceptor
from activities.settings import Settings
from runbook.status import TERMINAL_STATES, RemediationReport, RunStatus
from tests.history_scan import PROBE_TOKEN
from tests.workflow.harness import approve, finished, start, status
from worker import build_worker

# Phase 4's soak kept short: the matrix is about the mutating steps, not the soak.
FAST_SOAK = {"window_s": 60, "sample_every_s": 30, "requests_per_sample": 5}
# Workflow time moved on per idle poll: no gate timer (15 min reminder) fires between two
# polls, and a retry backoff (2 s .. 60 s) is crossed in a few polls.
SKIP = timedelta(seconds=20)
# While a hung operation holds the test server's clock at real time, poll finely.
HANG_SKIP = timedelta(seconds=1)


async def admin(sim, method: str, path: str, body: Any = None) -> Any:
    # The simulator's admin helper blocks; keep it off the loop the worker shares.
    return await asyncio.to_thread(sim.admin, method, path, body)


@dataclass
class Attempt:
    activity_id: str
    activity_type: str
    attempt: int
    first_seq: int  # mutation log entries with first_seq < seq <= last_seq were written
    last_seq: int = 0  # while this attempt ran


class MutationCursor:
    """The newest sequence number of the simulator's mutation log, read incrementally."""

    def __init__(self, sim, seq: int) -> None:
        self.sim, self.seq = sim, seq
        self._lock = asyncio.Lock()

    async def latest(self) -> int:
        async with self._lock:
            found = (await admin(self.sim, "GET", f"/_sim/mutations?since={self.seq}"))["mutations"]
            if found:
                self.seq = found[-1]["seq"]
            return self.seq


class CellInterceptor(Interceptor):
    def __init__(self, sim, cursor: MutationCursor, step_ids: tuple[str, ...],
                 fault: dict[str, Any] | None) -> None:
        self.sim, self.cursor, self.step_ids, self.fault = sim, cursor, step_ids, fault
        self.armed = asyncio.Event()
        self.attempts: list[Attempt] = []

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Record(next, self)


class _Record(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, cell: CellInterceptor) -> None:
        super().__init__(next)
        self.cell = cell

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        cell = self.cell
        if cell.fault and info.activity_id in cell.step_ids and not cell.armed.is_set():
            await admin(cell.sim, "POST", "/_sim/faults", cell.fault)
            cell.armed.set()
        rec = Attempt(info.activity_id, info.activity_type, info.attempt,
                      await cell.cursor.latest())
        cell.attempts.append(rec)
        try:
            return await super().execute_activity(input)
        finally:
            rec.last_seq = await cell.cursor.latest()


@dataclass
class CellRun:
    report: RemediationReport
    status: RunStatus
    mutations: list[dict[str, Any]]
    faults: list[dict[str, Any]]
    state_before: dict[str, Any]
    state_after: dict[str, Any]
    attempts: list[Attempt]
    armed: bool
    wall_s: float
    notes: list[str] = field(default_factory=list)
    # Operations that ended in error: a write under one may be retried (not a duplicate).
    failed_operations: set[str] = field(default_factory=set)


async def run_cell(env: WorkflowEnvironment, sim, *, world: str, request: dict[str, Any],
                   step_ids: tuple[str, ...] = (), fault: dict[str, Any] | None = None,
                   hang: bool = False, wall_limit_s: float = 240.0,
                   poll_interval_s: float = 0.05, started_runs: list | None = None) -> CellRun:
    await admin(sim, "DELETE", "/_sim/faults")
    await admin(sim, "POST", "/_sim/reset", {"world": world})
    state_before = await admin(sim, "GET", "/_sim/state")
    found = (await admin(sim, "GET", "/_sim/mutations"))["mutations"]
    since = found[-1]["seq"] if found else 0  # reset keeps the sequence
    cell = CellInterceptor(sim, MutationCursor(sim, since), step_ids, fault)
    settings = Settings(backend="sim", gcp_endpoint=sim.endpoint,
                        poll_interval_s=poll_interval_s, probe_token=PROBE_TOKEN)
    task_queue = f"faults-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    # A short graceful shutdown: a worker outlives its run only when the run never ended.
    async with build_worker(env.client, task_queue, build_activities(settings),
                            interceptors=[FailureAttemptInterceptor(), cell],
                            graceful_shutdown_timeout=timedelta(seconds=1)):
        handle = await start(env, request, task_queue)
        if started_runs is not None:
            started_runs.append(handle)
        await _drive(env, handle, started, wall_limit_s, cell.armed if hang else None)
        report = await finished(handle)
        st = await status(handle)
    wall = time.monotonic() - started
    mutations = (await admin(sim, "GET", f"/_sim/mutations?since={since}"))["mutations"]
    faults = (await admin(sim, "GET", "/_sim/faults"))["faults"]
    await admin(sim, "DELETE", "/_sim/faults")
    ops = (await admin(sim, "GET", "/_sim/operations"))["operations"]
    return CellRun(report=report, status=st, mutations=mutations, faults=faults,
                   state_before=state_before, state_after=await admin(sim, "GET", "/_sim/state"),
                   attempts=cell.attempts, armed=cell.armed.is_set(), wall_s=wall,
                   failed_operations={o["name"] for o in ops if o.get("fail") or o.get("error")})


async def _drive(env: WorkflowEnvironment, handle, started: float, wall_limit_s: float,
                 hang_armed: asyncio.Event | None) -> RunStatus:
    """Approve every gate as it opens; otherwise move workflow time on."""
    while True:
        st = await status(handle)
        if st.state in TERMINAL_STATES:
            return st
        if time.monotonic() - started > wall_limit_s:
            busy = [f"{s.id}={s.status.value}" for s in st.steps
                    if s.status.value in ("RUNNING", "FAILED", "COMPENSATION_FAILED")]
            pending = [f"{a.activity_id} ({a.activity_type.name}, attempt {a.attempt})"
                       for a in (await handle.describe()).raw_description.pending_activities]
            raise AssertionError(
                f"run still {st.state.value} after {wall_limit_s:.0f}s of real time "
                f"(steps {', '.join(busy) or 'none running'}; rollback log "
                f"{[(e.step_id, e.action) for e in st.rollback_log]}; activities in flight "
                f"{pending})")
        if st.pending_gate is not None:
            await approve(handle, st.pending_gate.id, "alice")
            continue
        await env.sleep(HANG_SKIP if hang_armed is not None and hang_armed.is_set() else SKIP)
