"""Verified approvals end to end, as `./dev up` runs them: Temporal, simulator, the approval
service (dev issuer) and a worker that takes verified identities only.

carol logs in and starts a run (requester proven); a direct, unsigned approval naming
alice is refused; carol cannot approve her own run even through the service; alice,
logged in, approves the plan she reviewed. Every step is a `runbook` subprocess.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from runbook.status import TERMINAL_STATES
from tests.cli.cli_process import CliResult, cli_env, run_cli
from tests.cli.local_stack import verified_stack

REQUEST = {
    "incident_id": "1280",
    "soak": {"window_s": 10, "sample_every_s": 5, "requests_per_sample": 5},
    "approval": {"default": {"remind_after_s": 60, "escalate_after_s": 120, "timeout_s": 600}},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from verified_stack(tmp_path_factory, "verified")


class Runbook:
    """`runbook …` against the stack, with its own login store."""

    def __init__(self, stack, config_dir: Path) -> None:
        self.stack = stack
        self.env = cli_env(config_dir)

    def __call__(self, *args: str, stdin: str | None = None) -> CliResult:
        cfg = self.stack.cfg
        return run_cli(["--address", cfg.temporal_address, "--ui-url", cfg.ui_url, *args],
                       self.env, stdin=stdin)

    def login(self, user: str) -> None:
        r = self("login", "--service", self.stack.cfg.approval_url, "--dev-user", user)
        assert r.code == 0, r.text
        assert f"logged in as {user}" in r.out

    def status(self, wid: str) -> dict:
        r = self("status", wid, "--json")
        assert r.code == 0, r.text
        return json.loads(r.out)

    def wait_for_gate(self, wid: str, gate: str, timeout: float = 150) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status(wid)
            if st["state"] == "AWAITING_APPROVAL" and (st.get("pending_gate") or {}).get("id") == gate:
                return st
            assert st["state"] not in {s.value for s in TERMINAL_STATES}, st
            time.sleep(0.3)
        raise AssertionError(f"gate {gate} never opened; last state {st['state']}")

    def wait_for_end(self, wid: str, timeout: float = 150) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status(wid)
            if st["state"] in {s.value for s in TERMINAL_STATES}:
                return st
            time.sleep(0.5)
        raise AssertionError(f"run {wid} did not end; last state {st['state']}")


def _approvals(st: dict, gate: str) -> list[str]:
    record = st.get("pending_gate") if (st.get("pending_gate") or {}).get("id") == gate else \
        next((g for g in st["gates"] if g["id"] == gate), {})
    return [a["approver"] for a in (record or {}).get("approvals", [])]


def test_only_a_verified_approver_other_than_the_requester_counts(stack, tmp_path):
    runbook = Runbook(stack, tmp_path / "config")
    request_file = tmp_path / "req.json"
    request_file.write_text(json.dumps(REQUEST))

    runbook.login("carol")
    r = runbook("start", "--request-file", str(request_file), "--json")
    assert r.code == 0, r.text
    started = json.loads(r.out)
    assert started["requested_by"] == "carol" and started["verified"] is True
    assert "via approval service as carol (verified)" in r.err
    wid = started["workflow_id"]
    st = runbook.wait_for_gate(wid, "phase-1")
    assert st["requested_by"] == "carol"
    digest = st["plan"]["digest"]

    # A direct update names alice but proves nothing: the worker refuses it.
    r = runbook("approve", wid, "--gate", "phase-1", "--direct", "--approver", "alice",
                "--digest", digest)
    assert r.code == 1, r.text
    assert "direct update: identity claimed, not verified" in r.err and "refused:" in r.err
    assert _approvals(runbook.status(wid), "phase-1") == []

    # Through the service, carol is proven to be carol, and the requester may not approve.
    r = runbook("approve", wid, "--gate", "phase-1", "--digest", digest)
    assert r.code == 1, r.text
    assert "via approval service as carol (verified)" in r.err
    assert "refused:" in r.err and "two-person rule" in r.err
    assert _approvals(runbook.status(wid), "phase-1") == []

    # alice, logged in: without --digest she is shown the plan and its digest, and asked.
    runbook.login("alice")
    r = runbook("approve", wid, "--gate", "phase-1", stdin="n\n")
    assert r.code == 1 and f"Plan digest: {digest}" in r.out and "not approved" in r.err, r.text
    assert "scale-connector" in r.out  # a planned change phase 1 releases
    assert _approvals(runbook.status(wid), "phase-1") == []
    r = runbook("approve", wid, "--gate", "phase-1", "--digest", digest, "--comment", "reviewed")
    assert r.code == 0, r.text
    assert "via approval service as alice (verified)" in r.err
    assert "accepted: gate phase-1" in r.out
    st = runbook.status(wid)
    assert _approvals(st, "phase-1") == ["alice"]

    # alice aborts through the service too; the run rolls back and ends.
    r = runbook("abort", wid, "--reason", "end of the rehearsal")
    assert r.code == 0, r.text
    assert "via approval service as alice (verified)" in r.err
    final = runbook.wait_for_end(wid)
    assert final["state"] != "SUCCEEDED"
