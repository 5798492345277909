"""Every saved scenario history must replay against the current workflow code.

A change that would break running workflows (reordered commands, a new timer or
upsert without ``workflow.patched``) fails here. Regenerate the fixtures only for an
intended, versioned change: REMEDIATION_RECORD_HISTORIES=1 pytest tests/workflow

``tests/histories/`` holds the current runbook's histories; ``tests/histories/v0/`` the
ones recorded before the ``gcp-fidelity-1`` patch (steps for the auth service's VPC
access, Redis, the serverless topology). Both generations must keep replaying: runs
started before a deployment are still running after it.
"""

from __future__ import annotations

import json

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.workflow.harness import HISTORIES
from worker import WORKFLOWS

V0 = {"happy_path", "empty_input", "gate_timeout", "hard_limit", "retry_succeeds",
      "non_retryable_phase_2", "bad_request", "preflight_refused", "gate_validation",
      "reject_phase_3", "abort_mid_step", "cancel_mid_step", "crash_resume"}
EXPECTED = V0 | {"serverless_happy_path", "preflight_serverless_timeout"}
SAVED = [f"v0/{n}" for n in sorted(V0)] + sorted(EXPECTED)


def test_every_scenario_has_a_saved_history():
    assert EXPECTED <= {p.stem for p in HISTORIES.glob("*.json")}
    assert V0 <= {p.stem for p in (HISTORIES / "v0").glob("*.json")}


@pytest.mark.parametrize("name", SAVED)
async def test_saved_history_replays(name):
    path = HISTORIES / f"{name}.json"
    history = WorkflowHistory.from_json(f"replay-{name.replace('/', '-')}", json.loads(path.read_text()))
    result = await Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter
                            ).replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
