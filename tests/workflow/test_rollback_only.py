"""A terminated run: what it left in force, how status/audit show it, and its rollback.

Terminate runs no workflow code, so the run's own saga never compensates. These tests
terminate a real RemediationWorkflow (FakeCloud doubles) and check that the history alone
says what is still in force, and that RemediationRollbackWorkflow undoes it.
"""

from __future__ import annotations

import asyncio
import copy
import uuid

import pytest
from rich.console import Console
from typer.testing import CliRunner
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from cli.audit import build_audit
from cli.audit_render import to_markdown
from cli.client import Settings
from cli.in_force import render_in_force
from cli.main import app
from cli.rollback import in_force_of, run_rollback
from runbook.changes_in_force import changes_in_force
from runbook.messages import ROLLBACK_WORKFLOW_TYPE
from runbook.rollback import RollbackReport, RollbackRequest, rollback_workflow_id
from runbook.request import Targets
from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import (
    FAST_SOAK,
    approve_when_pending,
    at_gate,
    keep_history,
    new_queue,
    start,
    until,
    worker_for,
)

T = Targets()
PHASE_1 = ["scale-connector", "expand-sql", "vpc-access-auth", "deploy-incident-env", "route-traffic"]


async def _rollback(env, source_id: str, tq: str):
    return await env.client.start_workflow(
        ROLLBACK_WORKFLOW_TYPE, {"source_workflow_id": source_id, "requested_by": "dana"},
        id=rollback_workflow_id(source_id) + f"-{uuid.uuid4().hex[:4]}", task_queue=tq,
        result_type=RollbackReport)


def _text(renderable) -> str:
    console = Console(record=True, width=250)
    console.print(renderable)
    return console.export_text()


async def test_terminated_at_the_phase_2_gate_is_read_from_history_and_rolled_back(time_skipping_env,
                                                                                     monkeypatch):
    # The time-skipping test server does not list a task queue's pollers.
    monkeypatch.setattr("cli.rollback.require_worker", lambda *_: asyncio.sleep(0))
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    world_before = copy.deepcopy(cloud.world)
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await approve_when_pending(env, handle, "phase-1")
        await until(env, handle, at_gate("phase-2"))
        await handle.terminate(reason="pressed Terminate in the UI")
        changed_world = copy.deepcopy(cloud.world)

        # (a) from the history alone: every phase-1 change, with the state it replaced
        cif = changes_in_force(await handle.fetch_history())
        assert (cif.closed_as, cif.close_reason) == ("TERMINATED", "pressed Terminate in the UI")
        assert [c.step_id for c in cif.changes] == PHASE_1 and cif.in_flight == []
        by_step = {c.step_id: c for c in cif.changes}
        sql = by_step["expand-sql"]
        assert sql.resource == f"sql/{T.sql_instance}"
        assert sql.before == world_before[sql.resource]
        assert sql.after == changed_world[sql.resource] != sql.before
        assert by_step["vpc-access-auth"].before == world_before[f"service/{T.auth_service}"]
        assert not by_step["scale-connector"].reversible and by_step["expand-sql"].reversible
        assert cif.request["soak"] == FAST_SOAK

        # (b) audit and status say what is in force and how to undo it
        audit = to_markdown(build_audit(await handle.fetch_history()))
        assert "Changes in force when the run ended (TERMINATED" in audit
        assert f"runbook rollback {handle.id}" in audit
        assert f"tier: db-custom-1-3840 → {changed_world[sql.resource]['tier']}" in audit
        # `runbook status` as a user runs it (its own event loop, in a thread: the worker
        # serving the status query runs on this loop)
        settings = Settings(address=env.client.service_client.config.target_host, task_queue=tq)
        res = await asyncio.to_thread(
            CliRunner().invoke, app, ["--address", settings.address, "--task-queue", tq, "status", handle.id],
            env={"COLUMNS": "250"})
        status = res.output
        assert res.exit_code == 0, status
        assert "Left in force by" in status and "was terminated" in status and "pressed Terminate in the UI" in status
        for step in PHASE_1:
            assert step in status
        assert f"runbook rollback {handle.id}" in status and "NO (irreversible)" in status

        # (c) an undo that fails makes the rollback fail loudly, with the report ...
        cloud.failures["undo-expand-sql"].append(
            ApplicationError("tier change refused", type="InvalidArgument", non_retryable=True))
        with pytest.raises(WorkflowFailureError) as err:
            await (await _rollback(env, handle.id, tq)).result()
        assert err.value.cause.type == "RollbackIncomplete"
        partial = RollbackReport.model_validate(err.value.cause.details[0])
        assert [c.step_id for c in partial.failed] == ["expand-sql"]
        assert "tier change refused" in partial.failed[0].detail
        assert [c.step_id for c in partial.reverted] == list(reversed(PHASE_1[2:]))
        assert cloud.world[sql.resource] == changed_world[sql.resource]
        # ... and running it again, as `runbook rollback <id> --wait` does (undos restore
        # the recorded state: safe to repeat), restores the world except the connector
        run = await run_rollback(settings, RollbackRequest(source_workflow_id=handle.id,
                                                           requested_by="dana"), wait=True)
        assert run.workflow_id == f"rollback-{handle.id}" and not run.incomplete
        report = run.report
        # status now points at the rollback that ran, not at a new one
        _, rollback_state = await in_force_of(settings, handle.id)
        assert rollback_state == "COMPLETED"
        assert "already rolled back by rollback-" in _text(render_in_force(cif, rollback_state))
    await keep_history(env.client.get_workflow_handle(run.workflow_id), "rollback_terminated_run")
    connector = f"connector/{T.connector}"
    assert {k: v for k, v in cloud.world.items() if k != connector and v} == \
        {k: v for k, v in world_before.items() if k != connector and v}
    assert cloud.world[connector] == changed_world[connector] != world_before[connector]
    assert [c.step_id for c in report.reverted] == list(reversed(PHASE_1[1:]))
    assert [c.step_id for c in report.left_in_place] == ["scale-connector"]
    assert report.failed == [] and report.in_flight_unknown == []
    assert (report.source_workflow_id, report.source_closed_as) == (handle.id, "TERMINATED")
    assert cloud.compensations() == list(reversed(PHASE_1[1:])) * 2


async def test_a_running_run_is_refused_and_an_in_flight_step_is_reported_unknown(dev_server_env):
    # On the real dev server: the time-skipping test server never releases its time lock
    # for an activity still running when its workflow is terminated, which would stop
    # time skipping for the rest of the session.
    env, cloud, tq = dev_server_env, FakeCloud(), new_queue()
    cloud.hold["expand-sql"] = asyncio.Event()
    try:
        async with worker_for(env, cloud, tq):
            handle = await start(env, {"soak": FAST_SOAK}, tq)
            await approve_when_pending(env, handle, "phase-1", skip_s=0)
            await asyncio.wait_for(cloud.holding["expand-sql"].wait(), 30)
            # (d) still running: abort it instead, so its own rollback runs
            refused = await _rollback(env, handle.id, tq)
            with pytest.raises(WorkflowFailureError) as err:
                await refused.result()
            assert err.value.cause.type == "SourceStillRunning"
            assert "abort it instead" in err.value.cause.message
            assert cloud.compensations() == []

            await handle.terminate(reason="stuck")
            cloud.hold["expand-sql"].set()  # the orphaned activity may end now
            cif = changes_in_force(await handle.fetch_history())
            missing = await _rollback(env, "no-such-run", tq)
            with pytest.raises(WorkflowFailureError) as err:
                await missing.result()
            assert err.value.cause.type == "SourceNotFound"
    finally:
        cloud.hold["expand-sql"].set()
    assert [c.step_id for c in cif.changes] == ["scale-connector"]
    assert [(s.step_id, s.resource, s.undo) for s in cif.in_flight] == \
        [("expand-sql", f"instance {T.sql_instance} (project {T.project})", False)]
    assert "in flight" in _text(render_in_force(cif))
