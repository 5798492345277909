"""The Web UI under verified identities (the stack as `./dev up` runs it by default).

A run started from the UI's start form with `{}` has no verified requester: the browser
must show, in the run's Current Details, that each gate needs two distinct verified
approvers (not a two-person rule it cannot enforce). An approve signal sent from the UI
carries no proof of who sent it: the run records it as ignored, with the reason, and the
gate stays open. Its own module: one stack at a time on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from runbook import messages as m
from runbook.status import RunStatus
from tests.cli.local_stack import REPO, verified_stack

SCRIPT = REPO / "tests" / "browser" / "ui_start_and_signal.mjs"

QUORUM_TEXT = "no verified requester: needs 2 distinct verified approvers"


@pytest.fixture(scope="module")
def stack(chromium, tmp_path_factory):
    yield from verified_stack(tmp_path_factory, "ui-verified-stack")


async def _ignored(address: str, workflow_id: str, timeout: float = 30) -> RunStatus:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    handle = client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + timeout
    while True:
        st = await handle.query(m.QUERY_STATUS, result_type=RunStatus)
        if st.ignored_messages or time.monotonic() > deadline:
            return st
        await asyncio.sleep(0.5)


def test_ui_start_under_verified_shows_the_quorum_rule(chromium, stack, tmp_path):
    wid = f"ui-verified-{uuid.uuid4().hex[:6]}"
    cfg = {
        "uiUrl": stack.cfg.ui_url, "namespace": stack.cfg.namespace, "workflowId": wid,
        "taskQueue": stack.cfg.task_queue, "workflowType": m.WORKFLOW_TYPE,
        "input": "{}", "signalName": m.SIGNAL_APPROVE,
        "signalInput": json.dumps({"gate": "phase-1", "approver": "ui-approver"}),
        "chromium": chromium, "artifactsDir": str(tmp_path / "artifacts"),
        "waitForText": "phase-1 reminder deadline", "expectText": QUORUM_TEXT,
    }
    cfg_file = tmp_path / "ui.json"
    cfg_file.write_text(json.dumps(cfg))
    proc = subprocess.run([shutil.which("node"), str(SCRIPT), str(cfg_file)], cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    steps = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n(screenshots in {tmp_path / 'artifacts'})"
    assert [s["step"] for s in steps] == ["started", "listed", "details", "signalled", "done"]
    assert QUORUM_TEXT in steps[2]["text"]

    st = asyncio.run(_ignored(stack.cfg.temporal_address, wid))
    assert st.identity.mode == "verified" and not st.identity.requester_verified
    gate = next(g for g in st.gates if g.id == "phase-1")
    assert gate.status == "OPEN" and gate.approvals == [] and gate.min_approvals == 2
    assert "a signal carries no proof of who sent it" in st.ignored_messages[-1].reason
