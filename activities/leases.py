"""Activities of the target leases: reach a project's keeper, and tell which runs still live.

``acquire_lease`` runs on the remediation worker (the run asks through it);
``describe_runs`` runs on the lease worker (the keeper's liveness check). Both talk only
to Temporal, through the injected client.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import (
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    PERMISSION_DENIED,
    UNAVAILABLE,
    app_error,
)
from runbook import activity_names
from runbook.leases import (
    LEASE_TASK_QUEUE,
    SIGNAL_REQUEST_LEASE,
    AcquireLeaseInput,
    KeeperState,
    keeper_id,
)
from workflows.lease_keeper import TargetLeaseWorkflow

NOT_FOUND_STATUS = "NOT_FOUND"
_NON_RETRYABLE = {RPCStatusCode.INVALID_ARGUMENT: INVALID_ARGUMENT,
                  RPCStatusCode.PERMISSION_DENIED: PERMISSION_DENIED,
                  RPCStatusCode.UNAUTHENTICATED: PERMISSION_DENIED,
                  RPCStatusCode.FAILED_PRECONDITION: FAILED_PRECONDITION}


def _classify(err: RPCError, what: str) -> ApplicationError:
    """Bad requests and permissions fail at once; the rest is retried by the RetryPolicy."""
    kind = _NON_RETRYABLE.get(err.status)
    if kind is not None:
        return app_error(f"{what}: {err.message}", kind)
    return app_error(f"{what}: {err.status.name if err.status else 'RPC error'}: {err.message}",
                     UNAVAILABLE, non_retryable=False)


class LeaseActivities:
    def __init__(self, client: Client, lease_task_queue: str = LEASE_TASK_QUEUE) -> None:
        self.client = client
        self.lease_task_queue = lease_task_queue

    @activity.defn(name=activity_names.ACQUIRE_LEASE)
    async def acquire_lease(self, req: AcquireLeaseInput) -> None:
        """Signal-with-start the project's keeper with the request; the answer comes back
        to the run as a ``lease_update`` signal."""
        if not req.project.strip():
            raise app_error("acquire_lease: project must not be empty", INVALID_ARGUMENT)
        if not req.request.resources:
            raise app_error("acquire_lease: request.resources must name at least one resource",
                            INVALID_ARGUMENT)
        try:
            await self.client.start_workflow(
                TargetLeaseWorkflow.run, KeeperState(), id=keeper_id(req.project),
                task_queue=self.lease_task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                start_signal=SIGNAL_REQUEST_LEASE, start_signal_args=[req.request],
                static_summary=f"Target leases of project {req.project}")
        except RPCError as err:
            raise _classify(err, f"signal-with-start of {keeper_id(req.project)}") from None

    @activity.defn(name=activity_names.DESCRIBE_RUNS)
    async def describe_runs(self, workflow_ids: list[str]) -> dict[str, str]:
        """Execution status name of each run (RUNNING, TERMINATED, TIMED_OUT, ...), or
        NOT_FOUND when no such workflow exists."""
        statuses: dict[str, str] = {}
        for wid in workflow_ids:
            try:
                desc = await self.client.get_workflow_handle(wid).describe()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    statuses[wid] = NOT_FOUND_STATUS
                    continue
                raise _classify(err, f"describe {wid}") from None
            if desc.status is None:
                # Never guess "dead": the keeper would take a live run's lease.
                raise app_error(f"describe {wid}: no execution status", UNAVAILABLE,
                                non_retryable=False)
            statuses[wid] = desc.status.name
        return statuses
