"""What `runbook rollback` does against Temporal, and how status reads a terminated run.

Returns models and raises CliError (what went wrong, then what to do next); printing is
left to cli.main and cli.in_force.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from cli.actions import _describe, rpc_errors
from cli.client import CliError, Settings, connect, require_worker
from runbook import messages as m
from runbook.changes_in_force import ChangesInForce, changes_in_force
from runbook.rollback import RollbackReport, RollbackRequest, rollback_workflow_id


@dataclass
class RollbackRun:
    workflow_id: str
    source: ChangesInForce  # what the CLI read from the source's history when starting
    worker_seen: bool
    report: RollbackReport | None = None  # with --wait
    incomplete: bool = False  # the run failed RollbackIncomplete (report has ``failed``)


async def _source_history(client: Client, settings: Settings, wid: str) -> ChangesInForce:
    handle, desc = await _describe(client, settings, wid)
    if desc.workflow_type != m.WORKFLOW_TYPE:
        raise CliError(f"{wid} is a {desc.workflow_type} run, not a {m.WORKFLOW_TYPE} run",
                       "give the id of a remediation run (see `runbook list`)")
    if desc.status == WorkflowExecutionStatus.RUNNING:
        raise CliError(f"run {wid} is still RUNNING: abort it, so that its own rollback undoes "
                       "its changes",
                       f"runbook abort {wid} --by <you> --reason \"...\" (then follow it with "
                       f"`runbook status {wid} --watch`)")
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        raise CliError(f"run {wid} SUCCEEDED: its changes are the remediation, not leftovers",
                       "to change them again, plan and start a new run (`runbook plan`)")
    async with rpc_errors(settings, wid):
        history = await client.get_workflow_handle(wid, run_id=desc.run_id).fetch_history()
    return changes_in_force(history)


async def run_rollback(settings: Settings, req: RollbackRequest, wait: bool) -> RollbackRun:
    """Start ``rollback-<id>`` (refused while one runs); with ``wait``, its report too."""
    client = await connect(settings)
    wid = req.source_workflow_id
    source = await _source_history(client, settings, wid)
    if wait:  # fail fast rather than wait forever on a run nobody will process
        await require_worker(client, settings)
    rid = rollback_workflow_id(wid)
    try:
        async with rpc_errors(settings):
            handle = await client.start_workflow(
                m.ROLLBACK_WORKFLOW_TYPE, req.model_dump(), id=rid, task_queue=settings.task_queue,
                # Again only after a failed one (fix the cause, retry); never twice at once,
                # and never after one completed: the source's history does not know the
                # rollback happened, so a second pass would restore stale state over newer work.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                result_type=RollbackReport,
                static_summary=f"Rollback of {wid} ({source.closed_as}), requested by "
                               f"{req.requested_by or 'unknown'}",
            )
    except WorkflowAlreadyStartedError as err:
        raise CliError(f"a rollback of {wid} is running or has completed: {rid}",
                       f"follow it in the UI: {settings.workflow_url(rid)}, or wait for its report "
                       f"with `temporal workflow result -w {rid}`") from err
    try:
        await require_worker(client, settings)
        worker_seen = True
    except CliError:
        worker_seen = False
    run = RollbackRun(workflow_id=rid, source=source, worker_seen=worker_seen)
    if wait:
        run.report, run.incomplete = await _result(handle, settings)
    return run


async def _result(handle: WorkflowHandle, settings: Settings) -> tuple[RollbackReport, bool]:
    try:
        return await handle.result(), False
    except WorkflowFailureError as err:
        cause = err.cause
        kind = cause.type if isinstance(cause, ApplicationError) else None
        if kind == "RollbackIncomplete" and cause.details:
            return RollbackReport.model_validate(cause.details[0]), True
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        raise CliError(f"rollback {handle.id} failed: {message}",
                       f"see the run in the UI: {settings.workflow_url(handle.id)}") from err


async def in_force_of(settings: Settings, wid: str) -> tuple[ChangesInForce, str | None]:
    """What a closed run left in force, and the state of its rollback run if there is one."""
    client = await connect(settings)
    async with rpc_errors(settings, wid):
        history = await client.get_workflow_handle(wid).fetch_history()
    try:
        desc = await client.get_workflow_handle(rollback_workflow_id(wid)).describe()
        rollback = desc.status.name if desc.status else None
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise CliError(f"could not read the rollback run of {wid}: {err.message}",
                           f"check it in the UI: {settings.workflow_url(rollback_workflow_id(wid))}"
                           ) from err
        rollback = None
    return changes_in_force(history), rollback
