"""Fixtures for driving the `runbook` CLI as a user would: a subprocess per command."""

from __future__ import annotations

import sys
import tempfile

import pytest

from gcpsim.launcher import free_port
from tests.cli.cli_process import CliResult, cli_env, run_cli
from tests.cli.local_stack import running_stack

_EMPTY_CONFIG = tempfile.mkdtemp(prefix="runbook-config-")


class Cli:
    """Runs `python -m cli.main` (what the `runbook` script runs) against one server."""

    def __init__(self, address: str, ui_url: str = "http://localhost:8233") -> None:
        self.address = address
        self.ui_url = ui_url

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cli.main", "--address", self.address,
                "--ui-url", self.ui_url, *args]

    def __call__(self, *args: str, timeout: float = 120) -> CliResult:
        # No stored login and no approval service: these commands send direct updates, as
        # their tests expect, whatever the developer running them is logged in as.
        return run_cli(self.argv(*args)[3:], cli_env(_EMPTY_CONFIG), timeout=timeout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from running_stack(tmp_path_factory, "stack")


@pytest.fixture(scope="module")
def cli(stack) -> Cli:
    return Cli(stack.cfg.temporal_address, stack.cfg.ui_url)


@pytest.fixture
def offline_cli() -> Cli:
    """A CLI pointed at a port where nothing listens."""
    return Cli(f"127.0.0.1:{free_port()}")


@pytest.fixture
def cli_for():
    """Make a CLI for any address (a server the test started itself)."""
    return Cli
