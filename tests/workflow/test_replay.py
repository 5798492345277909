"""Every saved scenario history must replay against the current workflow code.

A change that would break running workflows (reordered commands, a new timer or
upsert without ``workflow.patched``) fails here. Regenerate the fixtures only for an
intended, versioned change: REMEDIATION_RECORD_HISTORIES=1 pytest tests/workflow

``tests/histories/`` holds the current runbook's histories; ``tests/histories/v4/`` the ones
recorded before the ``identity-1`` patch (the identity policy resolved at run start, an
approval notice when each gate opens); ``tests/histories/v3/`` the ones
recorded before the ``operator-1`` patch (decision gates on failure, pause, drift
re-approval before each phase gate); ``tests/histories/v2/`` the
ones recorded before the ``faults-1`` patch (a slow undo logged and escalated, cleanup
yielding to an abort); ``tests/histories/v1/`` the
ones recorded before the ``safety-1`` patch (target leases, per-channel notifications,
outcomes other than SUCCEEDED ending as Failed/Canceled); ``tests/histories/v0/`` the ones
recorded before ``gcp-fidelity-1`` (steps for the auth service's VPC access, Redis, the
serverless topology). Every generation must keep replaying: runs started before a
deployment are still running after it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from runbook.messages import WORKFLOW_TYPE
from runbook.status import RemediationReport
from tests.workflow.harness import HISTORIES
from workflows.failure_types import BUG_EXCEPTION_TYPES
from workflows.remediation import RemediationWorkflow
from worker import WORKFLOWS

@workflow.defn(name=WORKFLOW_TYPE, sandboxed=False, failure_exception_types=BUG_EXCEPTION_TYPES)
class DriftedWorkflow(RemediationWorkflow):
    """A deliberately incompatible change: it runs the steps the plan skipped."""

    @workflow.init
    def __init__(self, request: Any = None) -> None:
        super().__init__(request)

    def _selected(self, step) -> bool:
        return True

    @workflow.run
    async def run(self, request: Any = None) -> RemediationReport:
        return await super().run(request)


@workflow.defn(name=WORKFLOW_TYPE, sandboxed=False, failure_exception_types=BUG_EXCEPTION_TYPES)
class UnguardedDriftCheck(RemediationWorkflow):
    """operator-1's drift check without its ``workflow.patched`` guard: a re-diagnosis
    before every later phase gate, also in runs recorded before it existed."""

    @workflow.init
    def __init__(self, request: Any = None) -> None:
        super().__init__(request)

    async def _await_gate(self, spec, chain, phase) -> None:
        if phase and phase > 1 and not self._operator:
            from workflows.drift_check import check_drift
            await check_drift(self._req, self._book, self._status, self._book.phases[phase - 1],
                              self._gates[spec.id], self._notify)
        await super()._await_gate(spec, chain, phase)

    @workflow.run
    async def run(self, request: Any = None) -> RemediationReport:
        return await super().run(request)


V0 = {"happy_path", "empty_input", "gate_timeout", "hard_limit", "retry_succeeds",
      "non_retryable_phase_2", "bad_request", "preflight_refused", "gate_validation",
      "reject_phase_3", "abort_mid_step", "cancel_mid_step", "crash_resume"}
V1 = V0 | {"serverless_happy_path"}
V2 = V1 | {"lease_refused", "lease_waited", "notification_failed", "rollback_terminated_run"}
V3 = V2 | {"undo_deadline", "abort_in_cleanup", "soak_stretched"}
V4 = V3 | {"decide_retry", "decide_skip", "decide_rollback", "decide_timeout",
           "pause_resume", "drift_reapproval"}
EXPECTED = V4 | {"verified_approvals"}
SAVED = ([f"v0/{n}" for n in sorted(V0)] + [f"v1/{n}" for n in sorted(V1)]
         + [f"v2/{n}" for n in sorted(V2)] + [f"v3/{n}" for n in sorted(V3)]
         + [f"v4/{n}" for n in sorted(V4)] + sorted(EXPECTED))


def test_every_scenario_has_a_saved_history():
    assert EXPECTED <= {p.stem for p in HISTORIES.glob("*.json")}
    assert V4 <= {p.stem for p in (HISTORIES / "v4").glob("*.json")}
    assert V3 <= {p.stem for p in (HISTORIES / "v3").glob("*.json")}
    assert V2 <= {p.stem for p in (HISTORIES / "v2").glob("*.json")}
    assert V1 <= {p.stem for p in (HISTORIES / "v1").glob("*.json")}
    assert V0 <= {p.stem for p in (HISTORIES / "v0").glob("*.json")}


@pytest.mark.parametrize("name", SAVED)
async def test_saved_history_replays(name):
    path = HISTORIES / f"{name}.json"
    history = WorkflowHistory.from_json(f"replay-{name.replace('/', '-')}", json.loads(path.read_text()))
    result = await Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter
                            ).replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


def test_nondeterminism_fails_the_task_not_the_run():
    # Failing the run on nondeterminism would end every run in flight at a bad deploy,
    # without rollback, and make the Replayer hang instead of reporting the break.
    from temporalio.workflow import NondeterminismError

    assert not any(issubclass(NondeterminismError, t) for t in BUG_EXCEPTION_TYPES)
    for wf in WORKFLOWS:
        defn = wf.__temporal_workflow_definition
        assert not any(issubclass(NondeterminismError, t) for t in defn.failure_exception_types)


async def test_a_replay_breaking_change_is_reported_not_hung():
    """The guard itself: a workflow that schedules the steps the saved run skipped must
    fail replay with a nondeterminism error, promptly."""
    path = HISTORIES / "serverless_happy_path.json"
    history = WorkflowHistory.from_json("drifted", json.loads(path.read_text()))
    replayer = Replayer(workflows=[DriftedWorkflow], data_converter=pydantic_data_converter,
                        workflow_runner=UnsandboxedWorkflowRunner())
    with pytest.raises(workflow.NondeterminismError):
        await asyncio.wait_for(replayer.replay_workflow(history), timeout=60)


async def test_the_operator_patch_is_what_keeps_runs_waiting_at_a_gate_replaying():
    """A run recorded before operator-1 (v3) replays on the current code because the drift
    check is guarded; the same change unguarded breaks it, promptly and by name."""
    path = HISTORIES / "v3" / "happy_path.json"
    history = WorkflowHistory.from_json("v3-happy", json.loads(path.read_text()))
    ok = await Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter
                        ).replay_workflow(history, raise_on_replay_failure=False)
    assert ok.replay_failure is None
    replayer = Replayer(workflows=[UnguardedDriftCheck], data_converter=pydantic_data_converter,
                        workflow_runner=UnsandboxedWorkflowRunner())
    with pytest.raises(workflow.NondeterminismError):
        await asyncio.wait_for(replayer.replay_workflow(history), timeout=60)
