"""Running the `runbook` CLI as a user would: one subprocess per command.

A module of its own (not the conftest) so every CLI test module can import it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.cli.local_stack import REPO


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli_env(config_dir: Path | str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI command: its own login store (never the developer's) and
    no approval service unless the test names one."""
    env = {**os.environ, "COLUMNS": "200", "RUNBOOK_CONFIG_DIR": str(config_dir)}
    env.pop("RUNBOOK_APPROVAL_URL", None)
    return env | (extra or {})


def run_cli(args: list[str], env: dict[str, str], *, stdin: str | None = None,
            timeout: float = 120) -> CliResult:
    proc = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env, input=stdin)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
