"""End-to-end: the real activities, through the real Google clients, against gcpsim,
driven by RemediationWorkflow under the time-skipping test server."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager

import pytest

from activities import build_activities
from activities.settings import Settings
from gcpsim.launcher import start_simulator
from tests.history_scan import PROBE_TOKEN
from worker import build_worker


@pytest.fixture(scope="module")
def sim():
    # Fast simulated time: a 5-minute SQL tier change takes half a second.
    with start_simulator(speed=600) as s:
        yield s


@pytest.fixture
def fresh_sim(sim):
    sim.admin("POST", "/_sim/reset")
    return sim


def sim_settings(sim) -> Settings:
    return Settings(backend="sim", gcp_endpoint=sim.endpoint, poll_interval_s=0.1,
                    probe_token=PROBE_TOKEN)


@asynccontextmanager
async def real_worker(env, sim, task_queue: str):
    async with build_worker(env.client, task_queue, build_activities(sim_settings(sim))):
        yield


async def admin(sim, method: str, path: str, body=None):
    # The admin helper blocks; keep it off the event loop the worker shares.
    return await asyncio.to_thread(sim.admin, method, path, body)


def queue() -> str:
    return f"e2e-{uuid.uuid4().hex[:8]}"
