"""Helpers to drive RemediationWorkflow under the time-skipping test server."""

from __future__ import annotations

import asyncio
import os
import uuid
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from runbook.outcome import OUTCOME_ERROR_TYPE
from runbook.run_result import final_report
from runbook.messages import UPDATE_APPROVE, UPDATE_REJECT, WORKFLOW_TYPE, GateAck
from runbook.request import GATE_IDS
from runbook.status import RemediationReport, RunState, RunStatus
from tests.workflow.doubles import FakeCloud
from worker import WORKFLOWS, build_worker

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
GATES = list(GATE_IDS)
FAST_SOAK = {"window_s": 120, "sample_every_s": 30, "requests_per_sample": 10}


@asynccontextmanager
async def worker_for(env: WorkflowEnvironment, cloud: FakeCloud, task_queue: str):
    async with build_worker(env.client, task_queue, cloud.activities()):
        yield


# Every run the suite starts; tests/conftest.py scans each one's history for secrets.
STARTED_RUNS: list[WorkflowHandle] = []


async def start(env: WorkflowEnvironment, request: Any, task_queue: str) -> WorkflowHandle:
    handle = await env.client.start_workflow(
        WORKFLOW_TYPE, request, id=f"wf-{uuid.uuid4().hex[:10]}", task_queue=task_queue,
        static_summary="test run", result_type=RemediationReport)
    STARTED_RUNS.append(handle)
    return handle


def new_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:8]}"


async def status(handle: WorkflowHandle) -> RunStatus:
    return await handle.query("status", result_type=RunStatus)


async def until(env: WorkflowEnvironment, handle: WorkflowHandle,
                predicate: Callable[[RunStatus], bool], *, skip_s: float = 1.0,
                max_polls: int = 2000) -> RunStatus:
    """Poll the status query, moving workflow time on by ``skip_s`` between polls so
    timer-driven progress (soak samples) happens without waiting in real time."""
    for _ in range(max_polls):
        st = await status(handle)
        if predicate(st):
            return st
        if skip_s:
            await env.sleep(timedelta(seconds=skip_s))
        else:
            await asyncio.sleep(0.05)
    raise AssertionError(f"condition never held; last state {st.state} gate "
                         f"{st.pending_gate.id if st.pending_gate else None}")


def at_gate(gate: str) -> Callable[[RunStatus], bool]:
    return lambda st: st.pending_gate is not None and st.pending_gate.id == gate


async def approve(handle: WorkflowHandle, gate: str, approver: str = "alice", **extra) -> GateAck:
    return await handle.execute_update(UPDATE_APPROVE, {"gate": gate, "approver": approver, **extra},
                                       result_type=GateAck)


async def reject(handle: WorkflowHandle, gate: str, approver: str = "alice", reason: str = "no") -> GateAck:
    return await handle.execute_update(UPDATE_REJECT, {"gate": gate, "approver": approver,
                                                       "reason": reason}, result_type=GateAck)


async def approve_when_pending(env, handle, gate: str, approver: str = "alice", skip_s: float = 1.0):
    await until(env, handle, at_gate(gate), skip_s=skip_s)
    return await approve(handle, gate, approver)


async def keep_history(handle: WorkflowHandle, name: str) -> None:
    """Replay the run's history against the current code now (nondeterminism check), and
    store it as a fixture when REMEDIATION_RECORD_HISTORIES=1 so CI replays it forever."""
    history = await handle.fetch_history()
    await Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter).replay_workflow(history)
    # Only on request: a missing fixture must fail test_replay, not be re-recorded from
    # the very code it is meant to check.
    path = HISTORIES / f"{name}.json"
    if os.environ.get("REMEDIATION_RECORD_HISTORIES") == "1":
        HISTORIES.mkdir(parents=True, exist_ok=True)
        path.write_text(history.to_json())


async def finished(handle: WorkflowHandle) -> RemediationReport:
    """Wait for the run to end and return its report, checking the outcome rule of
    runbook/outcome.py on the way: only SUCCEEDED is a Completed workflow; every other
    outcome is Failed with its typed error (or Canceled, for a Temporal cancel)."""
    report = await final_report(handle)
    desc = await handle.describe()
    if report.outcome == RunState.SUCCEEDED:
        assert desc.status == WorkflowExecutionStatus.COMPLETED, desc.status
        return report
    if desc.status == WorkflowExecutionStatus.CANCELED:
        assert report.outcome == RunState.ABORTED, report.outcome
        return report
    assert desc.status == WorkflowExecutionStatus.FAILED, (report.outcome, desc.status)
    try:
        await handle.result()
    except WorkflowFailureError as err:
        assert err.cause.type == OUTCOME_ERROR_TYPE[report.outcome], err.cause.type
        assert err.cause.non_retryable
    else:
        raise AssertionError(f"{report.outcome.value} run returned a result")
    return report
