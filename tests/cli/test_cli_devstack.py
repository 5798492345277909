"""`./dev up`, the README's first command: everything healthy, one line to type next,
clean stop."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from devstack.health import port_open
from gcpsim.launcher import free_port

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent will reap it).
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_up_waits_for_health_prints_next_step_and_stops_cleanly(tmp_path):
    ports = {"--temporal-port": free_port(), "--ui-port": free_port(), "--sim-port": free_port()}
    # Exactly the README's command; ./dev execs into `python -m devstack up`.
    argv = [str(REPO / "dev"), "up", "--data-dir", str(tmp_path / "data")]
    for flag, port in ports.items():
        argv += [flag, str(port)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        out = "".join(lines)
        assert "Stack is up." in out, out
        assert f"http://localhost:{ports['--ui-port']}/namespaces/default/workflows" in out
        assert "runbook" in out and "start --incident 1278" in out
        assert f"TEMPORAL_ADDRESS=127.0.0.1:{ports['--temporal-port']}" in out
        for port in ports.values():
            assert port_open("127.0.0.1", port)
        pids = [int(p) for p in re.findall(r"ready \(pid (\d+)", out)]
        assert len(set(pids)) == 3  # temporal, simulator, worker
        # everything it created is under the data dir
        assert {p.name for p in (tmp_path / "data").iterdir()} == {"temporal", "gcpsim", "logs"}
        assert {p.name for p in (tmp_path / "data" / "logs").iterdir()} == {"temporal.log", "gcpsim.log", "worker.log"}

        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert "stopped." in rest
    for pid in set(pids):
        assert not _alive(pid), f"pid {pid} survived"
    for port in ports.values():
        assert not port_open("127.0.0.1", port)


def test_port_in_use_is_explained(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "devstack", "up", "--data-dir", str(tmp_path),
                            "--temporal-port", str(port)], cwd=REPO, capture_output=True, text=True,
                           timeout=30)
    assert r.returncode == 1
    assert f"port {port} (Temporal gRPC) is already in use" in r.stderr
    assert "--temporal-port" in r.stderr


def test_next_command_reaches_a_stack_with_non_default_settings(monkeypatch):
    from typer.main import get_command

    from cli.client import Settings
    from cli.main import app
    from devstack.__main__ import banner, next_command
    from devstack.stack import Stack, StackConfig

    assert next_command(StackConfig()) == "runbook start --incident 1278"
    cfg = StackConfig(temporal_port=7300, ui_port=8300, namespace="team-a", task_queue="remediation-b")
    line = next_command(cfg)
    assert line == ("TEMPORAL_ADDRESS=127.0.0.1:7300 runbook --ui-url http://localhost:8300 "
                    "--namespace team-a --task-queue remediation-b start --incident 1278")
    assert line in banner(cfg)
    # Parsed as the CLI parses it, the command reaches the namespace and task queue that
    # devstack's worker polls; otherwise the run it starts would wait forever.
    assignment, _, command = line.partition(" runbook ")
    monkeypatch.setenv(*assignment.split("=", 1))
    ctx = get_command(app).make_context("runbook", shlex.split(command))
    settings = Settings(**ctx.params)
    worker = Stack(cfg).worker_env()
    assert (settings.address, settings.namespace, settings.task_queue) == (
        worker["TEMPORAL_ADDRESS"], worker["TEMPORAL_NAMESPACE"], worker["REMEDIATION_TASK_QUEUE"])
    assert settings.ui_url == cfg.ui_url
