"""Fixtures of the fault matrix: one simulator for the module (reset before every cell) and
a time-skipping test server that a cell can replace.

A cell whose run never ended leaves an activity in flight, and while one is in flight the
test server holds its clock at real time for every workflow: each later cell would then
wait out retry backoffs and soak timers in real time. Such a cell replaces the server.
"""

from __future__ import annotations

import pytest
import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from gcpsim.launcher import start_simulator
from tests.conftest import server_binary
from worker import build_lease_worker
from workflows import search_attributes as sa

# Fast simulated time: a 5-minute Cloud SQL tier change takes 50 ms.
SIM_SPEED = 6000


@pytest.fixture(scope="module")
def fault_sim():
    with start_simulator(speed=SIM_SPEED) as sim:
        yield sim


class ReplaceableEnv:
    """A time-skipping test server with the lease keepers' worker (as tests/conftest.py's
    ``time_skipping_env``), replaced on demand."""

    def __init__(self) -> None:
        self.env: WorkflowEnvironment | None = None
        self._lease_worker = None

    async def start(self) -> None:
        self.env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=server_binary("temporal-test-server"),
            data_converter=pydantic_data_converter)
        await sa.register(self.env.client)
        self._lease_worker = build_lease_worker(self.env.client)
        await self._lease_worker.__aenter__()

    async def stop(self) -> None:
        await self._lease_worker.__aexit__(None, None, None)
        await self.env.shutdown()

    async def replace(self) -> None:
        await self.stop()
        await self.start()


@pytest_asyncio.fixture(scope="module")
async def fault_env():
    holder = ReplaceableEnv()
    await holder.start()
    try:
        yield holder
    finally:
        await holder.stop()
