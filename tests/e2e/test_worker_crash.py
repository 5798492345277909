"""A worker process killed (SIGKILL) while an activity waits on a Cloud SQL operation.

The replacement worker resumes the same operation from the activity's heartbeat
checkpoint: the run finishes and the simulator's mutation log shows no change twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from gcpsim.launcher import start_simulator
from runbook.status import RunState, StepStatus
from tests.e2e.conftest import admin, queue, real_worker
from tests.workflow.harness import finished, GATES, approve_when_pending, start, status

ROOT = Path(__file__).resolve().parents[2]


async def _wait_for(predicate, timeout: float = 60.0, every: float = 0.1):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError("condition not reached in time")


async def _pump_clock(sim, stop: asyncio.Event) -> None:
    """Simulated time keeps moving after the crash, faster than this slow simulator."""
    while not stop.is_set():
        await admin(sim, "POST", "/_sim/clock/advance", {"seconds": 120})
        await asyncio.sleep(0.2)


@pytest.fixture
def slow_sim(tmp_path):
    # Slow simulated time: the 5-minute SQL tier change takes 30 real seconds, so the
    # worker can be killed while the activity is waiting on it. A sync fixture, so the
    # blocking start and stop stay off the event loop the test's worker shares.
    with start_simulator(speed=10, data_dir=tmp_path / "sim") as sim:
        yield sim


async def test_worker_killed_mid_operation_resumes_without_duplicates(dev_server_env, slow_sim):
    # The real dev server: it hands a dead worker's sticky workflow tasks to the
    # replacement after a timeout, as production does (the test server does not).
    env, tq, sim = dev_server_env, queue(), slow_sim
    worker_env = {**os.environ,
                  "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                  "REMEDIATION_TASK_QUEUE": tq, "REMEDIATION_GCP_ENDPOINT": sim.endpoint,
                  "REMEDIATION_POLL_INTERVAL_S": "0.2", "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=worker_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Real time here: a soak window of 0 ends the soak at its first clean sample.
        handle = await start(env, {"soak": {"window_s": 0}}, tq)
        await approve_when_pending(env, handle, "phase-1")

        async def sql_operation_pending():
            ops = (await admin(sim, "GET", "/_sim/operations"))["operations"]
            return [o for o in ops if o["api"] == "sqladmin" and not o["done"]]
        pending = await _wait_for(sql_operation_pending)
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Nothing has applied the tier change yet; the operation is still in flight.
    mutations = (await admin(sim, "GET", "/_sim/mutations"))["mutations"]
    assert not [m for m in mutations if m["api"] == "sqladmin"]

    stop = asyncio.Event()
    pump = asyncio.create_task(_pump_clock(sim, stop))
    try:
        async with real_worker(env, sim, tq):
            for gate in GATES[1:]:
                await approve_when_pending(env, handle, gate, skip_s=0)
            report = await finished(handle)
            st = await status(handle)
    finally:
        stop.set()
        await pump

    assert report.outcome == RunState.SUCCEEDED, report.reason
    sql = next(s for s in st.steps if s.id == "expand-sql")
    assert sql.status == StepStatus.SUCCEEDED and sql.attempts == 2
    assert sql.before["tier"] == "db-custom-1-3840"  # the state the first attempt replaced
    mutations = (await admin(sim, "GET", "/_sim/mutations"))["mutations"]
    sql_changes = [m for m in mutations if m["api"] == "sqladmin"]
    assert len(sql_changes) == 1 and sql_changes[0]["operation"].endswith(
        pending[0]["name"].split("/")[-1])
    writes = Counter((m["api"], m["method"], m["resource"], repr(m["after"])) for m in mutations)
    assert max(writes.values()) == 1

