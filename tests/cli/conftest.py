"""Fixtures for driving the `runbook` CLI as a user would: a subprocess per command."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from gcpsim.launcher import free_port
from tests.cli.local_stack import REPO, running_stack


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


class Cli:
    """Runs `python -m cli.main` (what the `runbook` script runs) against one server."""

    def __init__(self, address: str, ui_url: str = "http://localhost:8233") -> None:
        self.address = address
        self.ui_url = ui_url

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cli.main", "--address", self.address,
                "--ui-url", self.ui_url, *args]

    def __call__(self, *args: str, timeout: float = 120) -> CliResult:
        env = {**os.environ, "COLUMNS": "200"}
        proc = subprocess.run(self.argv(*args), cwd=REPO, capture_output=True, text=True,
                              timeout=timeout, env=env)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)


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
