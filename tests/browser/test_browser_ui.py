"""Start a run from the Temporal Web UI and approve its first gate from the signal dialog.

A real browser (chromium from PATH driven by Node playwright-core) against a stack
this test starts (Temporal dev server + Web UI, GCP simulator, worker). The result is
checked through the Python client: the run's `status` query must show gate phase-1
approved by the UI's signal.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from runbook import messages as m
from runbook.status import RunStatus
from tests.cli.local_stack import REPO, running_stack

SCRIPT = Path(__file__).parent / "ui_start_and_signal.mjs"


@pytest.fixture(scope="module")
def stack(chromium, tmp_path_factory):
    # Depends on chromium so a missing browser skips before a whole stack is started.
    yield from running_stack(tmp_path_factory, "ui-stack")


async def _gate_status(address: str, workflow_id: str, timeout: float = 30) -> RunStatus:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    handle = client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + timeout
    while True:
        st = await handle.query(m.QUERY_STATUS, result_type=RunStatus)
        gate = next(g for g in st.gates if g.id == "phase-1")
        if gate.status == "APPROVED" or time.monotonic() > deadline:
            return st
        await asyncio.sleep(0.5)


def test_start_from_ui_and_approve_gate_by_signal(chromium, stack, tmp_path):
    wid = f"ui-remediation-{uuid.uuid4().hex[:6]}"
    cfg = {
        "uiUrl": stack.cfg.ui_url, "namespace": stack.cfg.namespace, "workflowId": wid,
        "taskQueue": stack.cfg.task_queue, "workflowType": m.WORKFLOW_TYPE,
        "input": "{}", "signalName": m.SIGNAL_APPROVE,
        "signalInput": json.dumps({"gate": "phase-1", "approver": "ui-approver",
                                   "comment": "approved from the Web UI"}),
        "chromium": chromium, "artifactsDir": str(tmp_path / "artifacts"),
        # Approve once the gate is open: its reminder timer shows on the timeline.
        "waitForText": "phase-1 reminder deadline",
    }
    cfg_file = tmp_path / "ui.json"
    cfg_file.write_text(json.dumps(cfg))
    proc = subprocess.run([shutil.which("node"), str(SCRIPT), str(cfg_file)], cwd=REPO, capture_output=True,
                          text=True, timeout=180)
    steps = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n(screenshots in {tmp_path / 'artifacts'})"
    assert [s["step"] for s in steps] == ["started", "listed", "signalled", "done"]

    st = asyncio.run(_gate_status(stack.cfg.temporal_address, wid))
    gate = next(g for g in st.gates if g.id == "phase-1")
    assert gate.status == "APPROVED", st.model_dump_json(indent=2)[:2000]
    assert [(a.approver, a.via, a.comment) for a in gate.approvals] == [
        ("ui-approver", "signal", "approved from the Web UI")]
    # `{}` from the start form is the default request: incident 1278.
    assert st.incident_id == "1278"
