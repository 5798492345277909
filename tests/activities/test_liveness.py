"""Read-only activities heartbeat in the background (activities/liveness.py), so a short
heartbeat timeout notices a dead worker in seconds without failing a slow, live read.

Real time on the dev server: heartbeat timeouts are the server's business."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import TimeoutError as TemporalTimeout, TimeoutType
from temporalio.worker import Worker

from activities.liveness import ReadLivenessInterceptor
from runbook import activity_names as act

HEARTBEAT_S = 1.0
READ_TAKES_S = 2.5  # longer than the heartbeat timeout: only heartbeats keep it alive


@activity.defn(name=act.DIAGNOSE)
async def slow_diagnose() -> str:
    await asyncio.sleep(READ_TAKES_S)
    return "read"


@activity.defn(name=act.SCALE_CONNECTOR)
async def slow_mutation() -> str:
    # A mutating activity is left alone (its heartbeats carry its checkpoint).
    await asyncio.sleep(READ_TAKES_S)
    return "changed"


@workflow.defn(sandboxed=False)
class OneSlowActivity:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            name, start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=HEARTBEAT_S),
            retry_policy=RetryPolicy(maximum_attempts=1))


async def _run(env, name: str) -> str:
    queue = f"liveness-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=queue, workflows=[OneSlowActivity],
                      activities=[slow_diagnose, slow_mutation],
                      interceptors=[ReadLivenessInterceptor(every_s=0.2)]):
        return await env.client.execute_workflow(OneSlowActivity.run, name,
                                                 id=f"liveness-{uuid.uuid4()}", task_queue=queue)


async def test_a_slow_read_stays_alive_on_background_heartbeats(dev_server_env) -> None:
    assert await _run(dev_server_env, act.DIAGNOSE) == "read"


async def test_a_mutation_gets_no_empty_heartbeat_and_times_out(dev_server_env) -> None:
    with pytest.raises(WorkflowFailureError) as err:
        await _run(dev_server_env, act.SCALE_CONNECTOR)
    timeout = err.value.cause.cause
    assert isinstance(timeout, TemporalTimeout) and timeout.type == TimeoutType.HEARTBEAT


async def test_the_worker_sends_heartbeats_well_inside_every_heartbeat_timeout(time_skipping_env) -> None:
    """The production worker's send interval: a cancellation (abort, hard limit) reaches an
    activity only in a heartbeat's answer, and a checkpoint survives a crash only once
    sent. The SDK's default waits 0.8 x the timeout (8 s of a 10 s heartbeat timeout)."""
    from worker import HEARTBEAT_SEND_INTERVAL, build_worker

    w = build_worker(time_skipping_env.client, f"tq-{uuid.uuid4().hex[:8]}", [])
    assert w.config()["max_heartbeat_throttle_interval"] == HEARTBEAT_SEND_INTERVAL
    assert HEARTBEAT_SEND_INTERVAL.total_seconds() * 4 <= act.READ_HEARTBEAT_S
