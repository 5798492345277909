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

import httpx
import pytest

from devstack.health import port_open
from gcpsim.launcher import free_port
from runbook.envelope import EnvelopeVerifier

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
    ports = {"--temporal-port": free_port(), "--ui-port": free_port(), "--sim-port": free_port(),
             "--approval-port": free_port(), "--metrics-port": free_port(),
             "--health-port": free_port()}
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
        # The approval service and how to log in to it (verified identity is the default).
        approval_url = f"http://127.0.0.1:{ports['--approval-port']}"
        assert f"Approval service: {approval_url}" in out and "Identity        : verified" in out
        assert f"runbook login --service {approval_url} --dev-user <you>" in out
        assert httpx.get(f"{approval_url}/healthz", timeout=5).json() == {"ok": True}
        # The worker's own endpoints, on loopback: Prometheus metrics and readiness.
        metrics_url = f"http://127.0.0.1:{ports['--metrics-port']}/metrics"
        ready_url = f"http://127.0.0.1:{ports['--health-port']}/readyz"
        assert f"Worker metrics  : {metrics_url}" in out and f"Worker health   : {ready_url}" in out
        assert "temporal_" in httpx.get(metrics_url, timeout=5).text
        ready = None
        while time.monotonic() < deadline and getattr(ready, "status_code", 0) != 200:
            ready = httpx.get(ready_url, timeout=5)
            time.sleep(0.5)
        assert ready.status_code == 200, ready.text
        for port in ports.values():
            assert port_open("127.0.0.1", port)
        pids = [int(p) for p in re.findall(r"ready \(pid (\d+)", out)]
        assert len(set(pids)) == 4  # temporal, simulator, approval service, worker
        # everything it created is under the data dir
        data = tmp_path / "data"
        assert {p.name for p in data.iterdir()} == {"temporal", "gcpsim", "approval", "logs"}
        assert {p.name for p in (data / "logs").iterdir()} == {
            "temporal.log", "gcpsim.log", "approval.log", "worker.log"}
        # The envelope key pair made at first start: the private key is the owner's only.
        assert (data / "approval" / "signing-key.pem").stat().st_mode & 0o777 == 0o600
        EnvelopeVerifier.from_file(data / "approval" / "public-keys.json")

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


def test_stack_passes_identity_and_keys_to_worker_and_service(tmp_path):
    from devstack.procs import StackError
    from devstack.stack import Stack, StackConfig

    cfg = StackConfig(data_dir=tmp_path, approval_port=9100)
    stack = Stack(cfg)
    private, public = stack.ensure_envelope_keys()
    worker, service = stack.worker_env(), stack.approval_env()
    assert worker["REMEDIATION_APPROVAL_IDENTITY"] == "verified"
    assert worker["REMEDIATION_APPROVAL_PUBLIC_KEYS_FILE"] == str(public)
    assert service["RUNBOOK_APPROVAL_SIGNING_KEY_FILE"] == str(private)
    assert service["RUNBOOK_DEV_ISSUER"] == "1" and service["RUNBOOK_OIDC_ISSUERS"] == "[]"
    assert service["RUNBOOK_APPROVAL_PORT"] == "9100"
    # Its dev issuer logs anyone in: loopback only, even on a stack bound to the network.
    exposed = Stack(StackConfig(data_dir=tmp_path, ip="0.0.0.0", approval_port=9100))
    assert exposed.approval_env()["RUNBOOK_APPROVAL_HOST"] == "127.0.0.1"
    # What the service really reads from that environment (approval/config.py).
    from approval.config import ServiceSettings

    settings = ServiceSettings.from_env(service)
    assert settings.dev_issuer and settings.port == 9100 and settings.issuers == []
    assert settings.public_url == cfg.approval_url == "http://127.0.0.1:9100"
    assert settings.temporal_address == worker["TEMPORAL_ADDRESS"]
    settings.load_signer()
    # A second start keeps the keys: runs waiting at a gate must still verify approvals.
    before = private.read_bytes()
    assert stack.ensure_envelope_keys() == (private, public) and private.read_bytes() == before
    claimed = Stack(StackConfig(data_dir=tmp_path, identity="claimed", with_approval=False))
    assert claimed.worker_env()["REMEDIATION_APPROVAL_IDENTITY"] == "claimed"
    assert "REMEDIATION_APPROVAL_PUBLIC_KEYS_FILE" not in claimed.worker_env()
    with pytest.raises(StackError, match="identity: must be one of verified, claimed"):
        StackConfig(identity="trusted")


def test_keys_command_writes_a_pair_the_worker_verifies_and_never_overwrites(tmp_path):
    from datetime import datetime, timezone

    from devstack.__main__ import main
    from runbook.envelope import EnvelopeSigner, new_claims

    assert main(["keys", "--dir", str(tmp_path / "secrets"), "--kid", "team-1"]) == 0
    private = tmp_path / "secrets" / "signing-key.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    verifier = EnvelopeVerifier.from_file(tmp_path / "secrets" / "public-keys.json")
    assert verifier.key_ids == ["team-1"]
    token = EnvelopeSigner.from_pem(private.read_bytes(), "team-1").sign(
        new_claims(sub="alice", idp="test", act="abort", wid="w"))
    assert verifier.verify(token, datetime.now(timezone.utc)).sub == "alice"
    before = private.read_bytes()
    assert main(["keys", "--dir", str(tmp_path / "secrets")]) == 1
    assert private.read_bytes() == before
