"""Every error says what to do next, and exits non-zero (no server needed)."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from temporalio.client import WorkflowExecutionStatus, WorkflowQueryFailedError
from typer.main import get_command

from cli import actions
from cli.client import QUERY_FAILED_HINT, CliError, Settings
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
    assert r.code == 1 and "markdown (or md), json or html" in r.err


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


@pytest.mark.parametrize("content", [bytes(range(256)), "caf\u00e9".encode("latin-1"),
                                     b'{"a":' * 5000 + b"1" + b"}" * 5000, b"not json at all"])
def test_unreadable_request_file_is_named_without_a_traceback(offline_cli, tmp_path, content):
    f = tmp_path / "request.json"
    f.write_bytes(content)
    r = offline_cli("plan", "--request-file", str(f))
    assert r.code == 2, r.text
    assert f"error: request file {f}" in " ".join(r.err.split()) and "next:" in r.err
    assert "Traceback" not in r.text and "cannot reach" not in r.err


@pytest.mark.parametrize("limit", ["-1", "0", "1001", "99999999999999999999"])
def test_list_limit_out_of_range_is_refused_before_connecting(offline_cli, limit):
    r = offline_cli("list", "--limit", limit)
    assert r.code == 2, r.text
    assert f"--limit {limit} is out of range: give 1 to 1000" in " ".join(r.err.split())
    assert "Traceback" not in r.text and "cannot reach" not in r.err


class _FailingQueryHandle:
    """A running run whose status query raises in the workflow (e.g. an undecodable payload)."""

    async def describe(self):
        return SimpleNamespace(status=WorkflowExecutionStatus.RUNNING, typed_search_attributes={})

    async def query(self, *args, **kwargs):
        raise WorkflowQueryFailedError("invalid utf-8 sequence of 1 bytes from index 0")


def test_status_query_that_fails_with_a_worker_up_does_not_say_start_the_worker(monkeypatch):
    async def one_poller(*args, **kwargs):
        return [object()]

    monkeypatch.setattr(actions, "live_pollers", one_poller)
    client = SimpleNamespace(get_workflow_handle=lambda wid: _FailingQueryHandle())
    with pytest.raises(CliError) as err:
        asyncio.run(actions.get_status(Settings(), "remediation-1278-abc123", client=client))
    assert "status query failed in the workflow: invalid utf-8 sequence" in err.value.message
    assert err.value.hint == QUERY_FAILED_HINT and "worker.py" not in err.value.hint
