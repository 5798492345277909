"""Which runs hold (or wait for) the targets of a request: for `runbook plan` and `start`.

Reads the project's lease keeper (query ``leases``). A keeper that does not exist or has
ended holds nothing, so there is no conflict.
"""

from __future__ import annotations

from datetime import timedelta

from rich.console import Group, RenderableType
from rich.text import Text
from temporalio.client import Client, WorkflowQueryRejectedError
from temporalio.common import QueryRejectCondition
from temporalio.service import RPCError, RPCStatusCode

from cli.client import CliError, Settings, connect
from cli.render import fmt_time
from runbook.default_runbook import build_runbook
from runbook.leases import (
    LEASE_TASK_QUEUE,
    QUERY_LEASES,
    KeeperState,
    LeaseHolderInfo,
    keeper_id,
    leased_resources,
    overlapping,
)
from runbook.request import RemediationRequest

QUERY_TIMEOUT = timedelta(seconds=10)


class ConflictingRun(LeaseHolderInfo):
    queued: bool = False  # only waiting in line (``since`` is when it asked)


async def conflicting_runs(client: Client, project: str, resources: list[str]) -> list[ConflictingRun]:
    """Holders, then queued requests, whose resources overlap ``resources`` (each with
    only the overlapping resources; ``since`` is when a queued run asked)."""
    handle = client.get_workflow_handle(keeper_id(project))
    try:
        state = await handle.query(QUERY_LEASES, result_type=KeeperState,
                                   reject_condition=QueryRejectCondition.NOT_OPEN,
                                   rpc_timeout=QUERY_TIMEOUT)
    except WorkflowQueryRejectedError:
        return []  # the keeper has ended: nobody holds anything
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return []
        if err.status == RPCStatusCode.DEADLINE_EXCEEDED:
            raise CliError(f"the lease keeper {keeper_id(project)} did not answer",
                           f"start the lease worker (task queue {LEASE_TASK_QUEUE!r}): `./dev up` "
                           "or `python worker.py`") from err
        raise
    found: list[ConflictingRun] = [
        ConflictingRun(workflow_id=h.workflow_id, incident_id=h.incident_id, since=h.since,
                       resources=overlapping(h.resources, resources))
        for h in state.holders if overlapping(h.resources, resources)]
    found += [ConflictingRun(workflow_id=q.workflow_id, incident_id=q.incident_id, queued=True,
                             since=q.requested_at, resources=overlapping(q.resources, resources))
              for q in state.queue if overlapping(q.resources, resources)]
    return found


async def request_conflicts(settings: Settings, request: RemediationRequest) -> list[ConflictingRun]:
    """The runs holding or waiting for any target ``request``'s runbook may change."""
    client = await connect(settings)
    resources = leased_resources(build_runbook(request))
    return await conflicting_runs(client, request.targets.project, resources)


def render_conflicts(conflicts: list[ConflictingRun]) -> RenderableType:
    """One line per conflicting run and what it holds (or waits for); empty when none."""
    if not conflicts:
        return Text("")
    lines: list[RenderableType] = [Text(
        f"{len(conflicts)} other run(s) hold or wait for these targets; with lease policy "
        "'refuse' this run will be refused, with 'wait' it waits in line:", style="bold yellow")]
    for c in conflicts:
        incident = f" (incident {c.incident_id})" if c.incident_id else ""
        verb = "waits for" if c.queued else "holds"
        first, *rest = c.resources or ["-"]
        more = f" and {len(rest)} more" if rest else ""
        lines.append(Text.assemble("  Run ", (c.workflow_id, "bold"), f"{incident} {verb} ",
                                   (first, "cyan"), f"{more} since {fmt_time(c.since)}"))
    return Group(*lines)
