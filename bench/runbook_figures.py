"""Figures for the runbook's own targets, measured on the simulator (prints; asserts nothing).

    .venv/bin/python -m bench.runbook_figures [--speed 60]

- full run: wall time under the time-skipping server, history events and bytes (Temporal
  warns at 10,240 events / 10 MB and fails at 51,200 / 50 MB), status query size;
- emergency rollback of all four phases (soak burst past the hard limit): how long the
  rollback takes in *simulated* time, against the seeds' "restore in under 15 minutes".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import datetime, timedelta

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities import build_activities
from activities.settings import Settings
from devstack.stack import find_temporal
from gcpsim.launcher import start_simulator
from runbook.messages import UPDATE_APPROVE, WORKFLOW_TYPE
from runbook.run_result import final_report
from runbook.status import RemediationReport, RunState, RunStatus
from worker import build_lease_worker, build_worker
from workflows import search_attributes as sa

GATES = ["phase-1", "phase-2", "phase-3", "phase-4", "cleanup-revisions"]


async def _status(handle) -> RunStatus:
    return await handle.query("status", result_type=RunStatus)


async def _until(env, handle, pred, skip_s: float = 10.0) -> RunStatus:
    while True:
        st = await _status(handle)
        if pred(st):
            return st
        await env.sleep(timedelta(seconds=skip_s))


async def _approve_all(env, handle, gates) -> None:
    for gate in gates:
        await _until(env, handle, lambda s: s.pending_gate is not None and s.pending_gate.id == gate)
        await handle.execute_update(UPDATE_APPROVE, {"gate": gate, "approver": "bench"})


def _sim_now(sim) -> datetime:
    return datetime.fromisoformat(sim.admin("GET", "/_sim/clock")["now"].replace("Z", "+00:00"))


async def full_run(env, sim, tq) -> None:
    sim.admin("POST", "/_sim/reset")
    start = time.perf_counter()
    handle = await env.client.start_workflow(WORKFLOW_TYPE, {}, id=f"bench-{uuid.uuid4().hex[:8]}",
                                             task_queue=tq, result_type=RemediationReport)
    await _approve_all(env, handle, GATES)
    report = await handle.result()
    wall = time.perf_counter() - start
    history = await handle.fetch_history()
    size = len(json.dumps(history.to_json_dict()))
    status_size = len((await _status(handle)).model_dump_json())
    print(f"full run (default request, 15-min soak): {report.outcome.value} in {wall:.1f} s wall")
    print(f"  history: {len(history.events)} events, {size / 1024:.0f} KiB "
          f"({len(history.events) / 51200:.1%} of the event limit, {size / 50e6:.2%} of 50 MB)")
    print(f"  status query payload: {status_size / 1024:.1f} KiB")


async def rollback_run(env, sim, tq) -> None:
    sim.admin("POST", "/_sim/reset")
    handle = await env.client.start_workflow(
        WORKFLOW_TYPE, {"soak": {"window_s": 600, "sample_every_s": 60, "requests_per_sample": 5},
                        "budgets": {"phase_4_s": 300, "hard_limit_factor": 2.0}},
        id=f"bench-rb-{uuid.uuid4().hex[:8]}", task_queue=tq, result_type=RemediationReport)
    await _approve_all(env, handle, GATES[:4])
    await _until(env, handle, lambda s: s.phases[3].soak_samples >= 1, skip_s=5)
    sim.admin("POST", "/_sim/faults", {"api": "app", "kind": "app_503", "count": 100000})
    await _until(env, handle, lambda s: s.state == RunState.ROLLING_BACK, skip_s=5)
    sim_start, wall_start = _sim_now(sim), time.perf_counter()
    report = await final_report(handle)  # a rolled-back run ends Failed, report in the details
    sim_took = (_sim_now(sim) - sim_start).total_seconds()
    wall = time.perf_counter() - wall_start
    sim.admin("DELETE", "/_sim/faults")
    undone = len(report.changes_reverted)
    print(f"emergency rollback of 4 phases: {report.outcome.value}, {undone} changes reverted, "
          f"{len(report.changes_left_in_place)} left in place")
    print(f"  took {sim_took / 60:.1f} simulated minutes (target < 15), {wall:.1f} s wall "
          f"at simulator speed x{sim.admin('GET', '/_sim/clock')['speed']:.0f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # x60: polling every 0.1 s is 6 simulated seconds of slack per operation; at x600 the
    # slack (60 s each) would dominate the rollback figure.
    parser.add_argument("--speed", type=float, default=60.0, help="simulator speed factor")
    args = parser.parse_args()
    with start_simulator(speed=args.speed) as sim:
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=find_temporal("temporal-test-server"),
            data_converter=pydantic_data_converter)
        await sa.register(env.client)
        settings = Settings(backend="sim", gcp_endpoint=sim.endpoint, poll_interval_s=0.1)
        tq = f"bench-{uuid.uuid4().hex[:6]}"
        try:
            async with build_worker(env.client, tq, build_activities(settings)), \
                    build_lease_worker(env.client):
                await full_run(env, sim, tq)
                await rollback_run(env, sim, tq)
        finally:
            await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
