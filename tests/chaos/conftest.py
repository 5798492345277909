"""Fixtures of the crash-chaos suite: the dev server, gcpsim and the worker as real
processes (tests/chaos/processes.py), each killable by the test.

The suite is marked ``chaos`` and left out of the default ``./dev test`` (pyproject
addopts); run it with ``./dev test -m chaos``.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.chaos.driver import Chaos
from tests.chaos.processes import DevServer, SimProcess, WorkerProcess

# Simulated seconds per real second: a 4-minute Cloud Run rollout takes 4 s and a Cloud
# SQL tier change 5 s, long enough to be caught in flight, short enough for the budget.
SIM_SPEED = 60


@pytest.fixture(scope="session")
def chaos_server(tmp_path_factory):
    """One dev server for the suite, on a file database so it can be SIGKILLed and started
    again on the same state. Session-scoped: the secret scan of every run's history
    (tests/conftest.py) runs after each test and needs it up."""
    server = DevServer(tmp_path_factory.mktemp("temporal"))
    server.start()
    yield server
    server.kill()


@asynccontextmanager
async def chaos_harness(server: DevServer, tmp_path, request,
                        make_worker: Callable[[SimProcess], Any]) -> AsyncIterator[Chaos]:
    """A fresh simulator, the worker(s) ``make_worker`` gives for it (a WorkerProcess or a
    WorkerPool), started; everything stopped at the end, with the logs of a failed test."""
    sim = SimProcess(tmp_path, speed=SIM_SPEED)
    await asyncio.to_thread(sim.start)
    worker = make_worker(sim)
    worker.start()
    client = await Client.connect(server.address, data_converter=pydantic_data_converter)
    harness = Chaos(server=server, sim=sim, worker=worker, client=client)
    try:
        yield harness
    finally:
        harness.stop_approving()
        await asyncio.to_thread(worker.kill)
        await asyncio.to_thread(sim.stop)
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(f"kills: {[(k.point) for k in harness.kills]}\nworker logs:\n{worker.logs()}")


@pytest_asyncio.fixture
async def chaos(chaos_server, tmp_path, request):
    async with chaos_harness(chaos_server, tmp_path, request, lambda sim: WorkerProcess(
            tmp_path, chaos_server, sim, f"chaos-{uuid.uuid4().hex[:8]}")) as harness:
        yield harness


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep
