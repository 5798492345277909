"""`runbook login`, `logout`, `whoami` and the path each action takes, against the real
approval service app (served by uvicorn on a free port, with its dev issuer).

The service's ActionSender is the real one, signing real envelopes; only the Temporal side
is replaced by a recorder of the update each action would send (the real run is
tests/cli/test_cli_verified_stack.py). Every command is a `runbook` subprocess.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from approval.__main__ import build_verifier
from approval.actions import ActionSender
from approval.config import ServiceSettings
from approval.service import create_app
from gcpsim.launcher import free_port
from runbook import messages as m
from runbook.envelope import EnvelopeSigner, EnvelopeVerifier, read_claims, write_keypair
from runbook.status import PauseRecord
from tests.cli.cli_process import CliResult, cli_env, run_cli

KID = "test-1"
CLOSED_RUN = "remediation-1278-closed"
MISSING_RUN = "remediation-1278-nosuch"


@dataclass
class Recorded:
    workflow_id: str
    run_id: str
    update: str
    payload: dict[str, Any]


@dataclass
class RecordingTemporal:
    """What the sender sends to Temporal, recorded; runs answer as running ones do."""

    updates: list[Recorded] = field(default_factory=list)

    def get_workflow_handle(self, workflow_id: str, run_id: str | None = None) -> Any:
        temporal = self

        class Handle:
            def __init__(self) -> None:
                self.id, self.run_id = workflow_id, run_id

            async def describe(self) -> Any:
                if workflow_id == MISSING_RUN:
                    raise RPCError(f"workflow not found: {workflow_id}", RPCStatusCode.NOT_FOUND, b"")
                status = (WorkflowExecutionStatus.COMPLETED if workflow_id == CLOSED_RUN
                          else WorkflowExecutionStatus.RUNNING)
                return SimpleNamespace(status=status, run_id=f"run-of-{workflow_id}")

            async def execute_update(self, update: str, payload: dict, result_type: Any = None) -> Any:
                temporal.updates.append(Recorded(workflow_id, self.run_id, update, payload))
                if result_type is m.GateAck:
                    return m.GateAck(gate=payload["gate"], accepted=True, approvals=1, required=2,
                                     gate_status="OPEN")
                if update in (m.UPDATE_PAUSE, m.UPDATE_RESUME):
                    now = datetime.now(timezone.utc)
                    return PauseRecord(by=payload["by"], requested_at=now, held_at=now,
                                       resumed_at=now if update == m.UPDATE_RESUME else None)
                return {}

        return Handle()


class RecordingSender(ActionSender):
    """The real sender (claims, signature, payload shapes) over the recording Temporal."""

    def __init__(self, signer: EnvelopeSigner) -> None:
        self.temporal = RecordingTemporal()
        super().__init__(self.temporal, signer)  # type: ignore[arg-type]


@dataclass
class Service:
    url: str
    sender: RecordingSender
    verifier: EnvelopeVerifier

    @property
    def updates(self) -> list[Recorded]:
        return self.sender.temporal.updates


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Service:
    keys = tmp_path_factory.mktemp("approval-keys")
    write_keypair(keys / "signing.pem", keys / "public.json", KID)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = ServiceSettings.from_env({
        "RUNBOOK_DEV_ISSUER": "1", "RUNBOOK_OIDC_ISSUERS": "[]", "RUNBOOK_APPROVAL_PORT": str(port),
        "RUNBOOK_APPROVAL_SIGNING_KEY_FILE": str(keys / "signing.pem"),
        "RUNBOOK_APPROVAL_SIGNING_KID": KID})
    sender = RecordingSender(settings.load_signer())
    token_verifier, routers = build_verifier(settings)
    app = create_app(settings, sender, token_verifier, extra_routers=routers)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.05)
    yield Service(url, sender, EnvelopeVerifier.from_file(keys / "public.json"))
    server.should_exit = True
    thread.join(timeout=10)


class Runbook:
    """`runbook …` with its own config dir; Temporal at a port where nothing listens, so a
    command that reaches for Temporal says so instead of passing unnoticed."""

    def __init__(self, config_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.config_dir = config_dir
        self.env = cli_env(config_dir, extra_env)  # RUNBOOK_APPROVAL_URL: only what a test sets
        self.temporal = f"127.0.0.1:{free_port()}"

    def __call__(self, *args: str, stdin: str | None = None) -> CliResult:
        return run_cli(["--address", self.temporal, *args], self.env, stdin=stdin)

    @property
    def login_file(self) -> Path:
        return self.config_dir / "login.json"

    def stored(self) -> dict[str, Any]:
        return json.loads(self.login_file.read_text())


@pytest.fixture
def runbook(tmp_path) -> Runbook:
    return Runbook(tmp_path / "config")


def _login(runbook: Runbook, service: Service, user: str) -> dict[str, Any]:
    r = runbook("login", "--service", service.url, "--dev-user", user)
    assert r.code == 0, r.text
    return runbook.stored()


# --- login / whoami / logout ----------------------------------------------------------


def test_dev_login_stores_a_private_login_and_never_prints_the_token(runbook, service):
    r = runbook("login", "--service", service.url, "--dev-user", "Alice")
    assert r.code == 0, r.text
    stored = runbook.stored()
    issuer = f"{service.url}/dev-issuer"
    assert stored["service"] == service.url and stored["identity"] == "alice"
    assert stored["idp"] == issuer
    until = datetime.fromtimestamp(stored["expires_at"], timezone.utc).strftime("%H:%M UTC")
    assert f"logged in as alice (issuer {issuer}) until {until}" in r.out
    assert stored["token"].count(".") == 2 and stored["token"] not in r.text
    assert runbook.login_file.stat().st_mode & 0o777 == 0o600
    assert runbook.config_dir.stat().st_mode & 0o077 == 0  # the folder is the owner's too
    w = runbook("whoami")
    assert w.code == 0, w.text
    assert f"alice (issuer {issuer}) via {service.url}" in w.out and stored["token"] not in w.text
    out = runbook("logout")
    assert out.code == 0 and f"logged out (alice at {service.url})" in out.out
    assert not runbook.login_file.exists()
    w = runbook("whoami")
    assert w.code == 1 and "not logged in" in w.err and "runbook login" in w.err


def test_a_token_file_or_command_is_checked_by_the_service(runbook, service, tmp_path):
    _login(runbook, service, "bob")
    token = runbook.stored()["token"]
    runbook("logout")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    r = runbook("login", "--service", service.url, "--token-file", str(token_file))
    assert r.code == 0, r.text
    assert runbook.stored()["identity"] == "bob" and token not in r.text
    runbook("logout")
    # What `--id-token-command 'gcloud auth print-identity-token'` does: stdout is the token.
    command = shlex.join([sys.executable, "-c", f"print(open({str(token_file)!r}).read())"])
    r = runbook("login", "--service", service.url, "--id-token-command", command)
    assert r.code == 0, r.text
    assert runbook.stored()["identity"] == "bob" and token not in r.text


def test_a_refused_token_is_not_stored_and_not_printed(runbook, service, tmp_path):
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.c2ln"
    token_file = tmp_path / "token"
    token_file.write_text(forged)
    r = runbook("login", "--service", service.url, "--token-file", str(token_file))
    assert r.code == 1
    assert "login expired or refused: run `runbook login`" in r.err
    assert forged not in r.text and not runbook.login_file.exists()
    failing = shlex.join([sys.executable, "-c", "import sys; sys.exit(3)"])
    r = runbook("login", "--service", service.url, "--id-token-command", failing)
    assert r.code == 1 and "--id-token-command" in r.err and "exited with code 3" in r.err
    r = runbook("login", "--service", service.url)
    assert r.code == 1 and "exactly one of --dev-user, --id-token-command, --token-file" in r.err
    assert not runbook.login_file.exists()


def test_an_unreachable_service_is_named(runbook):
    url = f"http://127.0.0.1:{free_port()}"
    r = runbook("login", "--service", url, "--dev-user", "alice")
    assert r.code == 1
    assert f"cannot reach the approval service at {url} (connection refused)" in r.err
    assert "Traceback" not in r.text


# --- which path an action takes ---------------------------------------------------------


def test_logged_in_approve_goes_through_the_service_with_a_signed_envelope(runbook, service):
    _login(runbook, service, "alice")
    wid = "remediation-1278-aaaaaa"
    r = runbook("approve", wid, "--gate", "phase-1", "--digest", "0123456789abcdef",
                "--comment", "plan reviewed")
    assert r.code == 0, r.text
    assert "via approval service as alice (verified)" in r.err
    assert "accepted: gate phase-1 — 1 of 2 approvals, gate is now OPEN" in r.out
    sent = service.updates[-1]
    assert (sent.workflow_id, sent.run_id, sent.update) == (wid, f"run-of-{wid}", m.UPDATE_APPROVE)
    assert sent.payload | {"envelope": None} == {
        "gate": "phase-1", "approver": "alice", "plan_digest": "0123456789abcdef",
        "comment": "plan reviewed", "envelope": None}
    claims = service.verifier.verify(sent.payload["envelope"], datetime.now(timezone.utc))
    assert (claims.sub, claims.act, claims.wid, claims.rid, claims.gate, claims.digest, claims.via) \
        == ("alice", "approve", wid, f"run-of-{wid}", "phase-1", "0123456789abcdef", "cli")
    assert claims.idp == f"{service.url}/dev-issuer"


def test_logged_in_approve_refuses_someone_elses_name_and_a_missing_digest(runbook, service):
    _login(runbook, service, "alice")
    before = len(service.updates)
    r = runbook("approve", "remediation-1278-bbbbbb", "--gate", "phase-1", "--approver", "bob",
                "--digest", "0123456789abcdef")
    assert r.code == 1
    assert "--approver 'bob' is not you: you are logged in as alice" in r.err and "--direct" in r.err
    r = runbook("approve", "remediation-1278-bbbbbb", "--gate", "phase-1", "--yes")
    assert r.code == 1 and "pass --digest" in r.err
    # The same name in another spelling is the same person.
    r = runbook("approve", "remediation-1278-bbbbbb", "--gate", "phase-1", "--approver", " ALICE ",
                "--digest", "0123456789abcdef")
    assert r.code == 0, r.text
    assert len(service.updates) == before + 1


def test_direct_and_logged_out_actions_claim_the_identity(runbook, service, tmp_path):
    _login(runbook, service, "alice")
    before = len(service.updates)
    r = runbook("approve", "remediation-1278-cccccc", "--gate", "phase-1", "--direct",
                "--approver", "bob")
    # Straight to Temporal (not running here): the path is said before the connection fails.
    assert r.code == 1
    assert "direct update: identity claimed, not verified" in r.err
    assert "cannot reach the Temporal server" in r.err
    logged_out = Runbook(tmp_path / "nobody")
    r = logged_out("reject", "remediation-1278-cccccc", "--gate", "phase-1", "--approver", "bob")
    assert r.code == 1 and "direct update: identity claimed, not verified" in r.err
    r = logged_out("abort", "remediation-1278-cccccc", "--reason", "x")
    assert r.code == 1 and "--by: required for a direct update" in r.err
    assert len(service.updates) == before


def test_every_action_goes_through_the_service_as_the_logged_in_identity(runbook, service):
    _login(runbook, service, "dave")
    wid = "remediation-1278-dddddd"
    before = len(service.updates)
    for args in (["reject", wid, "--gate", "phase-2", "--reason", "not now"],
                 ["decide", wid, "--gate", "decide-configure-backend", "--decision", "retry"],
                 ["pause", wid, "--reason", "lunch"], ["resume", wid],
                 ["abort", wid, "--reason", "wrong incident", "--by", "dave"]):
        r = runbook(*args)
        assert r.code == 0, (args, r.text)
        assert "via approval service as dave (verified)" in r.err
    sent = service.updates[before:]
    assert [s.update for s in sent] == [m.UPDATE_REJECT, m.UPDATE_DECIDE, m.UPDATE_PAUSE,
                                        m.UPDATE_RESUME, m.UPDATE_ABORT]
    assert [s.payload.get("approver") or s.payload.get("by") for s in sent] == ["dave"] * 5
    acts = [read_claims(s.payload["envelope"]).act for s in sent]
    assert acts == ["reject", "decide", "pause", "resume", "abort"]
    assert read_claims(sent[1].payload["envelope"]).decision == "retry"


def test_the_runs_refusal_and_unknown_runs_are_explained(runbook, service):
    _login(runbook, service, "alice")
    r = runbook("approve", CLOSED_RUN, "--gate", "phase-1", "--digest", "0123456789abcdef")
    assert r.code == 1
    assert f"refused: run {CLOSED_RUN} is COMPLETED: it takes no more actions" in r.err
    assert f"runbook status {CLOSED_RUN}" in r.err
    r = runbook("pause", MISSING_RUN)
    assert r.code == 1 and f"knows no run '{MISSING_RUN}'" in r.err


def test_an_expired_or_mismatched_login_is_an_error_not_a_silent_fallback(runbook, service):
    stored = _login(runbook, service, "alice")
    runbook.login_file.write_text(json.dumps(stored | {"expires_at": int(time.time()) - 60}))
    r = runbook("approve", "remediation-1278-eeeeee", "--gate", "phase-1", "--digest", "0" * 16)
    assert r.code == 1 and "login expired or refused: run `runbook login`" in r.err
    assert "direct update" not in r.text
    runbook.login_file.write_text(json.dumps(stored))
    elsewhere = Runbook(runbook.config_dir, {"RUNBOOK_APPROVAL_URL": "http://127.0.0.1:1"})
    r = elsewhere("approve", "remediation-1278-eeeeee", "--gate", "phase-1", "--digest", "0" * 16)
    assert r.code == 1 and "RUNBOOK_APPROVAL_URL names http://127.0.0.1:1" in r.err
