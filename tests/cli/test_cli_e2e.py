"""The whole CLI against a real local stack: plan → start → approve every gate → audit.

devstack starts the Temporal dev server, the GCP simulator and the real worker
(`python worker.py`); every step is a `runbook` subprocess, as an SRE would type it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import httpx
import pytest

from devstack.stack import find_temporal
from runbook.status import TERMINAL_STATES
from tests.cli.local_stack import REPO

# Short real-time settings: soak 10 s sampled every 5 s, quick gate reminders.
REQUEST = {
    "incident_id": "1278",
    "requested_by": "oncall-sre",
    "soak": {"window_s": 10, "sample_every_s": 5, "requests_per_sample": 5},
    "approval": {"default": {"remind_after_s": 60, "escalate_after_s": 120, "timeout_s": 600}},
}
APPROVERS = {"phase-1": "alice", "phase-2": "bob", "phase-3": "chen", "phase-4": "dana",
             "cleanup-revisions": "erin"}


@pytest.fixture(scope="module")
def request_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("req") / "req.json"
    path.write_text(json.dumps(REQUEST))
    return path


def status_json(cli, wid: str) -> dict:
    r = cli("status", wid, "--json")
    assert r.code == 0, r.text
    return json.loads(r.out)


def wait_for_gate(cli, wid: str, gate: str, timeout: float = 150) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status_json(cli, wid)
        pending = st.get("pending_gate") or {}
        if st["state"] == "AWAITING_APPROVAL" and pending.get("id") == gate:
            return st
        # Waiting for a gate of a run that has ended (even SUCCEEDED) can only time out.
        assert st["state"] not in {s.value for s in TERMINAL_STATES}, st
        time.sleep(0.3)  # each poll is a CLI process already
    raise AssertionError(f"gate {gate} never opened; last state {st['state']}")


def start(cli, request_file, *extra: str) -> str:
    r = cli("start", "--request-file", str(request_file), *extra, "--json")
    assert r.code == 0, r.text
    return json.loads(r.out)["workflow_id"]


def test_full_run_from_the_cli(cli, stack, request_file, tmp_path):
    # plan: read-only diagnosis of the simulator's default world
    r = cli("plan", "--request-file", str(request_file), "--json")
    assert r.code == 0, r.text
    plan = json.loads(r.out)
    assert plan["problems"] == [] and plan["changes"] and plan["digest"]
    r = cli("plan", "--request-file", str(request_file))
    assert r.code == 0 and "Preflight: no problems" in r.out and "NO (irreversible)" in r.out

    # start: id and UI link
    r = cli("start", "--request-file", str(request_file))
    assert r.code == 0, r.text
    wid = r.out.split("Started run ")[1].split()[0]
    assert wid.startswith("remediation-1278-")
    assert f"{stack.cfg.ui_url}/namespaces/default/workflows/{wid}" in r.out

    # follow it live in the background, as a second terminal would
    watch = subprocess.Popen(cli.argv("status", wid, "--watch", "--interval", "1"), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "COLUMNS": "200"})
    try:
        st = wait_for_gate(cli, wid, "phase-1")
        assert st["plan"]["digest"] == plan["digest"]

        # refusals come back at once with the validator's reason and a next step
        r = cli("approve", wid, "--gate", "phase-1", "--approver", "oncall-sre")
        assert r.code == 1 and "two-person rule" in r.err and "pending gate is phase-1" in r.err
        r = cli("approve", wid, "--gate", "phase-2", "--approver", "bob")
        assert r.code == 1 and "not pending" in r.err
        r = cli("approve", wid, "--gate", "phase-1", "--approver", "alice", "--digest", "0000000000000000")
        assert r.code == 1 and "does not match the current plan" in r.err

        for gate, approver in APPROVERS.items():
            wait_for_gate(cli, wid, gate)
            args = ["approve", wid, "--gate", gate, "--approver", approver, "--comment", f"{approver} ok"]
            if gate == "phase-1":
                args += ["--digest", plan["digest"]]
            r = cli(*args)
            assert r.code == 0, r.text
            assert f"accepted: gate {gate}" in r.out and "APPROVED" in r.out

        out, _ = watch.communicate(timeout=240)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, out[-3000:]
    assert "run ended: SUCCEEDED" in out

    final = status_json(cli, wid)
    assert final["state"] == "SUCCEEDED"
    changed_steps = {s["id"] for s in final["steps"] if s["changed"]}
    assert {"scale-connector", "expand-sql", "delete-old-revisions"} <= changed_steps

    r = cli("status", wid)
    assert r.code == 0 and "SUCCEEDED" in r.out and "remediation complete" in r.out

    # list: visibility on the search attributes (eventually consistent: poll briefly)
    for _ in range(20):
        r = cli("list", "--incident", "1278", "--state", "SUCCEEDED", "--json")
        assert r.code == 0, r.text
        if any(row["workflow_id"] == wid for row in json.loads(r.out)):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"{wid} not listed as SUCCEEDED: {r.out}")

    # audit from live history names every approver and every change
    r = cli("audit", wid)
    assert r.code == 0, r.text
    md = r.out
    for approver in APPROVERS.values():
        assert approver in md
    assert "oncall-sre" in md and "runbook-cli:" in md and plan["digest"] in md
    for step in changed_steps:
        assert step in md
    assert "Outcome:** SUCCEEDED" in md

    html_file = tmp_path / "audit.html"
    r = cli("audit", wid, "--format", "html", "--output", str(html_file))
    assert r.code == 0 and "erin" in html_file.read_text()

    # the same audit from an exported history file
    export = tmp_path / "history.json"
    with export.open("w") as fh:
        subprocess.run([find_temporal(), "workflow", "show", "-w", wid, "--output", "json",
                        "--address", stack.cfg.temporal_address], stdout=fh, check=True, timeout=60)
    live = json.loads(cli("audit", wid, "--format", "json").out)
    offline = json.loads(cli("audit", "--history-file", str(export), "--format", "json").out)
    assert offline["workflow_id"] == wid
    for key in ("decisions", "changes_applied", "phases", "outcome", "activities"):
        assert offline[key] == live[key], key

    # a finished run cannot be approved any more
    r = cli("approve", wid, "--gate", "phase-1", "--approver", "zoe")
    assert r.code == 1 and "nothing to approve" in r.err and f"runbook audit {wid}" in r.err


def temporal(stack, *args: str) -> dict:
    """The `temporal` CLI against the stack's server, JSON output parsed."""
    proc = subprocess.run([find_temporal("temporal"), *args, "--address",
                           stack.cfg.temporal_address, "--output", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


def closed_status(stack, wid: str) -> str:
    return temporal(stack, "workflow", "describe", "-w", wid)["workflowExecutionInfo"]["status"]


def wait_for_state(cli, wid: str, state: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while (st := status_json(cli, wid))["state"] != state:
        assert time.monotonic() < deadline, f"{wid} did not reach {state}: {st['state']}"
        time.sleep(0.3)
    return st


def sim_mutations(stack) -> list[dict]:
    return httpx.get(f"{stack.cfg.sim_endpoint}/_sim/mutations").json()["mutations"]


def test_one_run_per_target_then_reject_and_abort(cli, stack, request_file):
    """Runs started from the `temporal` CLI with `{}` (as from the UI) obey the lease:
    refused at once naming the holder, or queued until it ends; none mutates meanwhile."""
    before = len(sim_mutations(stack))
    holder = start(cli, request_file)
    wait_for_gate(cli, holder, "phase-1")
    start_args = ("workflow", "start", "--type", "RemediationWorkflow", "--task-queue", "remediation")
    temporal(stack, *start_args, "--workflow-id", "lease-refused", "--input", "{}")
    refused = wait_for_state(cli, "lease-refused", "REFUSED")
    assert holder in refused["outcome_reason"]
    temporal(stack, *start_args, "--workflow-id", "lease-waiter",
             "--input", json.dumps({**REQUEST, "incident_id": "INC-ABORT", "lease": {"policy": "wait"}}))
    waiting = wait_for_state(cli, "lease-waiter", "WAITING_FOR_LEASE")
    assert waiting["lease"]["position"] == 1
    assert [h["workflow_id"] for h in waiting["lease"]["holders"]] == [holder]
    # `runbook start` lists the holder and, with the default policy, does not start at all.
    r = cli("start", "--request-file", str(request_file))
    assert r.code == 1 and holder in r.err and "lease.policy=wait" in r.err
    assert sim_mutations(stack)[before:] == []  # the holder is at its gate: nobody changed anything

    r = cli("reject", holder, "--gate", "phase-1", "--approver", "dave", "--reason", "wrong project")
    assert r.code == 0 and "REJECTED" in r.out, r.text
    wait_for_state(cli, holder, "REJECTED")
    wait_for_gate(cli, "lease-waiter", "phase-1")  # the waiter went on once the holder ended
    r = cli("abort", "lease-waiter", "--by", "frank", "--reason", "drill over")
    assert r.code == 0, r.text
    wait_for_state(cli, "lease-waiter", "ABORTED")
    # None of these remediated: none is a green Completed workflow.
    for wid in (holder, "lease-refused", "lease-waiter"):
        assert closed_status(stack, wid) == "WORKFLOW_EXECUTION_STATUS_FAILED", wid
    md = cli("audit", holder).out
    assert "dave" in md and "wrong project" in md and "REJECTED" in md and "Temporal: FAILED" in md
    md = cli("audit", "lease-waiter").out
    assert "frank" in md and "drill over" in md and "ABORTED" in md


def test_plan_with_preflight_problems_exits_non_zero(cli):
    # A well-formed value Google refuses on this load balancer (serverless NEG backends):
    # only the live topology can tell.
    r = cli("plan", "--set", "desired.backend_service_timeout_s=600")
    assert r.code == 1, r.text
    assert "Preflight problems (1)" in r.out and "desired.backend_service_timeout_s" in r.out
    assert "Timeout sec is not supported" in " ".join(r.out.split())
    assert "runbook plan" in r.err  # what to do next


def test_live_errors_name_the_next_step(cli):
    r = cli("status", "remediation-1278-nosuch")
    assert r.code == 1 and "no run with id" in r.err and "runbook list" in r.err
    r = cli("--task-queue", "nobody-polls-this", "plan")
    assert r.code == 1 and "no worker is polling task queue 'nobody-polls-this'" in r.err
    assert "./dev up" in r.err
