"""Every error says what to do next, and exits non-zero (no server needed)."""

from __future__ import annotations

import importlib
import json
import subprocess
import time
import tomllib
from pathlib import Path

import typer
from typer.main import get_command

from cli.main import app
from devstack.health import port_open
from devstack.stack import find_temporal
from gcpsim.launcher import free_port
from tests.cli.local_stack import REPO


def test_console_script_target_is_the_typer_app():
    # What `pip install` turns into the `runbook` command.
    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["runbook"]
    module, _, attr = target.partition(":")
    assert getattr(importlib.import_module(module), attr) is app
    assert isinstance(app, typer.Typer)
    names = set(get_command(app).commands)
    assert {"start", "plan", "status", "approve", "reject", "abort", "list", "audit"} <= names


def test_server_unreachable_says_how_to_start_it(offline_cli):
    r = offline_cli("status", "remediation-1278-abc123")
    assert r.code == 1
    assert "cannot reach the Temporal server" in r.err and "connection refused" in r.err
    assert "./dev up" in r.err and "TEMPORAL_ADDRESS" in r.err
    assert "Traceback" not in r.text


def test_invalid_request_is_refused_before_connecting(offline_cli):
    r = offline_cli("start", "--set", "desired.connector_max_instances=30", "--set", "desired.sql_tier=db-g1-standard-2")
    assert r.code == 1
    assert "desired.connector_max_instances" in r.err and "desired.sql_tier" in r.err
    assert "cannot reach" not in r.err


def test_audit_needs_an_id_or_a_file(offline_cli, tmp_path):
    r = offline_cli("audit")
    assert r.code == 1 and "give a run id or --history-file" in r.err
    r = offline_cli("audit", "--history-file", str(tmp_path / "missing.json"))
    assert r.code == 1 and "temporal workflow show -w ID --output json" in r.err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"events": [{"eventType": "NOT_AN_EVENT"}]}))
    r = offline_cli("audit", "--history-file", str(bad))
    assert r.code == 1 and "not a Temporal history export" in r.err
    # Right shape, wrong field types: the protobuf parser's own error type.
    bad.write_text(json.dumps({"events": [{"eventId": "abc"}]}))
    r = offline_cli("audit", "--history-file", str(bad))
    assert r.code == 1 and "not a Temporal history export" in r.err, r.text
    assert "next: export it with `temporal workflow show" in r.err and "Traceback" not in r.text
    r = offline_cli("audit", "x", "--format", "pdf")
    assert r.code == 1 and "markdown, json or html" in r.err


def test_unknown_state_is_named(offline_cli):
    r = offline_cli("list", "--state", "DONE")
    assert r.code == 1 and "AWAITING_APPROVAL" in r.err


def test_audit_from_file_offline_writes_html(offline_cli, tmp_path):
    fixtures = Path(__file__).parent / "fixtures"
    out = tmp_path / "audit.html"
    r = offline_cli("audit", "--history-file", str(fixtures / "rejected.history.json"),
                    "--format", "html", "--output", str(out))
    assert r.code == 0, r.text
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "dave" in page and "REJECTED" in page


def test_unregistered_search_attributes_say_how_to_register(tmp_path, cli_for):
    """A server without the runbook's search attributes (e.g. a fresh team cluster)."""
    port = free_port()
    server = subprocess.Popen([find_temporal(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
                               "--port", str(port), "--db-filename", str(tmp_path / "t.db")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.2)
        cli = cli_for(f"127.0.0.1:{port}")
        for args in (["start"], ["list", "--state", "RUNNING"]):
            for _ in range(20):  # the frontend can answer before the namespace exists
                r = cli(*args)
                if "search attribute" in r.err:
                    break
                time.sleep(0.5)
            assert r.code == 1, r.text
            assert "does not know the runbook's search attributes" in r.err
            assert "temporal operator search-attribute create" in r.err
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_empty_approver_is_named_before_connecting(offline_cli):
    r = offline_cli("approve", "remediation-1278-abc123", "--gate", "phase-1", "--approver", "")
    assert r.code == 1 and "--approver" in r.err and "cannot reach" not in r.err
