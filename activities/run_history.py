"""Reading another run's history: what a terminated remediation run left in force.

The Temporal client is injected (the worker's own). Errors are classified once: a run
that does not exist, or is not a remediation run, or is still running (it must be
aborted so its own rollback runs, not undone behind its back) fails at once; a server
that is unavailable or throttling is retried by Temporal.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from runbook import activity_names as act
from runbook.changes_in_force import ChangesInForce, changes_in_force
from runbook.messages import WORKFLOW_TYPE

# RPC failures that no retry will fix.
_NON_RETRYABLE = {RPCStatusCode.NOT_FOUND: "SourceNotFound",
                  RPCStatusCode.PERMISSION_DENIED: "PermissionDenied",
                  RPCStatusCode.INVALID_ARGUMENT: "InvalidArgument"}


class RunHistoryActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name=act.READ_CHANGES_IN_FORCE)
    async def read_changes_in_force(self, source_workflow_id: str) -> ChangesInForce:
        """The changes the latest run of ``source_workflow_id`` left in force."""
        wid = source_workflow_id
        try:
            desc = await self._client.get_workflow_handle(wid).describe()
            if desc.status == WorkflowExecutionStatus.RUNNING:
                raise ApplicationError(
                    f"SourceStillRunning: run {wid} is still RUNNING; abort it instead (signal "
                    "`abort` or cancel it) so its own rollback undoes its changes",
                    type="SourceStillRunning", non_retryable=True)
            if desc.status == WorkflowExecutionStatus.COMPLETED:
                # Its changes are the remediation it was asked for: undoing them is a
                # decision for a new run with its own plan and approvals, not a cleanup.
                raise ApplicationError(
                    f"SourceSucceeded: run {wid} SUCCEEDED; its changes are the remediation, "
                    "not leftovers. Start a new run to change them", type="SourceSucceeded",
                    non_retryable=True)
            if desc.workflow_type != WORKFLOW_TYPE:
                raise ApplicationError(
                    f"NotARemediationRun: {wid} is a {desc.workflow_type}, not a {WORKFLOW_TYPE}",
                    type="NotARemediationRun", non_retryable=True)
            history = await self._client.get_workflow_handle(wid, run_id=desc.run_id).fetch_history()
        except RPCError as err:
            kind = _NON_RETRYABLE.get(err.status)
            if kind is None:
                raise  # unavailable, throttled, deadline: Temporal retries the activity
            what = f"no run with id {wid!r}" if kind == "SourceNotFound" else err.message
            raise ApplicationError(f"{kind}: {what}", type=kind, non_retryable=True) from err
        return changes_in_force(history)
