"""`runbook pause`, `resume` and `decide` against the real local stack, in one run.

The run is paused and resumed at its phase-1 gate, then phase 2's Cloud Run deploy
(`configure-backend`) is refused by the simulator with a 403 (PermissionDenied: not
retryable), which opens the decision gate `decide-configure-backend`. Skipping is refused
(the step is not skippable); once the fault is gone, `retry` redeploys and the run moves
on to phase 3, where it is aborted. Every step is a `runbook` subprocess, as typed by an SRE.
"""

from __future__ import annotations

import json
import time

import httpx

from runbook.status import TERMINAL_STATES
from tests.cli.test_cli_e2e import status_json, wait_for_gate, wait_for_state

BACKEND = "netra-backend-staging"
STEP = "configure-backend"
DECISION_GATE = f"decide-{STEP}"
REQUESTER = "oncall-sre"
REQUEST = {
    "incident_id": "1279",
    "requested_by": REQUESTER,
    "soak": {"window_s": 10, "sample_every_s": 5, "requests_per_sample": 5},
    "approval": {"default": {"remind_after_s": 60, "escalate_after_s": 120, "timeout_s": 600}},
}
# The deploy's PATCH of the backend service answers 403 once: the activity classifies it
# PermissionDenied (non-retryable), so the step fails on its first attempt.
DEPLOY_FORBIDDEN = {"kind": "http", "api": "run", "method": "PATCH", "resource": BACKEND,
                    "status": 403, "count": 1, "message": "quota project lacks run.services.update"}


def sim_faults(stack, method: str, body: dict | None = None) -> dict:
    r = httpx.request(method, f"{stack.cfg.sim_endpoint}/_sim/faults", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_decision_gate(cli, wid: str, gate: str, timeout: float = 150) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status_json(cli, wid)
        pending = st.get("pending_gate") or {}
        if st["state"] == "AWAITING_DECISION" and pending.get("id") == gate:
            return st
        assert st["state"] not in {s.value for s in TERMINAL_STATES}, st
        time.sleep(0.3)
    raise AssertionError(f"decision gate {gate} never opened; last state {st['state']}")


def test_pause_resume_and_decide_a_failed_step(cli, stack, tmp_path):
    request_file = tmp_path / "req.json"
    request_file.write_text(json.dumps(REQUEST))
    r = cli("start", "--request-file", str(request_file), "--json")
    assert r.code == 0, r.text
    wid = json.loads(r.out)["workflow_id"]

    st = wait_for_gate(cli, wid, "phase-1")
    assert st["requested_by"] == REQUESTER and st["pending_gate"]["two_person_rule"] is True

    # pause at a gate: nothing is in flight, so it holds at once
    r = cli("pause", wid, "--by", "alice", "--reason", "wait for the DBA")
    assert r.code == 0, r.text
    assert "paused:" in r.out and f"{wid} holds now" in r.out
    st = status_json(cli, wid)
    assert st["state"] == "PAUSED"
    assert st["pause"]["by"] == "alice" and st["pause"]["reason"] == "wait for the DBA"
    assert st["pause"]["held_at"] and "phase-1" in st["pause"]["held_before"]
    r = cli("pause", wid, "--by", "bob")
    assert r.code != 0 and "refused: already paused by alice" in r.err, r.text

    r = cli("resume", wid, "--by", "alice", "--reason", "DBA agreed")
    assert r.code == 0, r.text
    assert f"resumed: {wid} goes on" in r.out
    st = status_json(cli, wid)
    assert st["state"] == "AWAITING_APPROVAL" and st["pause"] is None
    assert [(p["by"], p["resumed_by"]) for p in st["pauses"]] == [("alice", "alice")]
    r = cli("resume", wid, "--by", "alice")
    assert r.code != 0, r.text
    assert "error: refused:" in r.err and "not paused" in r.err and "next:" in r.err

    # the requester may not approve (two-person rule); others carry it through phase 2
    r = cli("approve", wid, "--gate", "phase-1", "--approver", REQUESTER)
    assert r.code != 0 and "two-person rule" in r.err, r.text
    for gate, approver in (("phase-1", "alice"), ("phase-2", "bob")):
        wait_for_gate(cli, wid, gate)
        if gate == "phase-2":  # phase 1 deploys to the same service: arm the fault after it
            sim_faults(stack, "POST", DEPLOY_FORBIDDEN)
        r = cli("approve", wid, "--gate", gate, "--approver", approver)
        assert r.code == 0 and f"accepted: gate {gate}" in r.out, r.text

    st = wait_for_decision_gate(cli, wid, DECISION_GATE)
    gate = st["pending_gate"]
    assert gate["kind"] == "decision" and gate["step_id"] == STEP and gate["phase"] == 2
    assert gate["options"] == ["retry", "rollback"]
    assert gate["failure"].startswith("PermissionDenied:") and "HTTP 403" in gate["failure"], gate
    assert gate["attempts"] == 1 and gate["decision"] is None
    assert "scale-connector" in gate["in_force"] and STEP not in gate["in_force"]
    step = next(s for s in st["steps"] if s["id"] == STEP)
    assert step["status"] == "FAILED", step
    (fault,) = sim_faults(stack, "GET")["faults"]
    assert fault["fired"] == 1  # one attempt: a 403 is not retried

    r = cli("decide", wid, "--gate", DECISION_GATE, "--decision", "skip", "--by", "bob",
            "--reason", "deploy by hand later")
    assert r.code != 0, r.text
    assert "error: refused:" in r.err and "not mark configure-backend skippable" in r.err
    assert "options: retry, rollback" in r.err and "next:" in r.err
    r = cli("decide", wid, "--gate", DECISION_GATE, "--decision", "retry", "--by", REQUESTER)
    assert r.code != 0 and "two-person rule" in r.err, r.text
    assert status_json(cli, wid)["state"] == "AWAITING_DECISION"  # the refusals changed nothing

    sim_faults(stack, "DELETE")
    r = cli("decide", wid, "--gate", DECISION_GATE, "--decision", "retry", "--by", "bob",
            "--reason", "quota raised")
    assert r.code == 0, r.text
    assert f"decided: retry on {DECISION_GATE}" in r.out

    # the retried deploy succeeds and phase 2 finishes: the run waits at phase 3
    st = wait_for_gate(cli, wid, "phase-3")
    step = next(s for s in st["steps"] if s["id"] == STEP)
    assert step["status"] == "SUCCEEDED" and step["changed"], step
    decided = next(g for g in st["gates"] if g["id"] == DECISION_GATE)
    assert decided["status"] == "DECIDED"
    assert (decided["decision"]["decision"], decided["decision"]["by"],
            decided["decision"]["reason"]) == ("retry", "bob", "quota raised")

    r = cli("abort", wid, "--by", "frank", "--reason", "drill over")
    assert r.code == 0, r.text
    final = wait_for_state(cli, wid, "ABORTED", timeout=120)
    assert "frank" in final["outcome_reason"] and "drill over" in final["outcome_reason"]

    r = cli("audit", wid, "--format", "md")
    assert r.code == 0, r.text
    md = r.out
    assert f"| decide | {DECISION_GATE} | bob |" in md and "| retry: quota raised |" in md
    assert "| pause |  | alice |" in md and "| wait for the DBA |" in md
    assert "| resume |  | alice |" in md and "| DBA agreed |" in md
    assert "frank" in md and "ABORTED" in md
