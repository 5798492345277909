"""What each command does against Temporal; returns models, leaves printing to main/render."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, AsyncIterator

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from cli.client import (
    QUERY_FAILED_HINT,
    WORKER_HINT,
    CliError,
    Settings,
    connect,
    live_pollers,
    require_worker,
    translate_rpc,
)
from runbook import messages as m
from runbook.plan import Plan
from runbook.request import RemediationRequest
from runbook.run_result import final_report
from runbook.status import RemediationReport, RunState, RunStatus
from workflows import search_attributes as sa

if TYPE_CHECKING:
    from cli.login import StoredLogin


@asynccontextmanager
async def rpc_errors(settings: Settings, workflow_id: str | None = None) -> AsyncIterator[None]:
    try:
        yield
    except RPCError as err:
        raise translate_rpc(err, settings, workflow_id) from err


def _cause(err: BaseException) -> str:
    """The innermost human message of a Temporal failure chain."""
    while getattr(err, "cause", None) is not None:
        err = err.cause  # type: ignore[assignment]
    return getattr(err, "message", None) or str(err)


# --- start / plan ---------------------------------------------------------------------


@dataclass
class Started:
    workflow_id: str
    run_id: str | None
    worker_seen: bool


def new_workflow_id(incident: str, prefix: str = "remediation") -> str:
    # Short and unique: the incident is readable in lists, the suffix allows re-runs.
    return f"{prefix}-{incident}-{secrets.token_hex(3)}"


async def start_run(settings: Settings, request: RemediationRequest,
                    service: "StoredLogin | None" = None) -> Started:
    """Start the run straight on Temporal (requester claimed), or through the approval
    service of ``service`` (requester verified: the service signs the request)."""
    client = await connect(settings)
    incident = request.incident_id
    wid = new_workflow_id(incident)
    if service is not None:
        with service.client() as approval:
            # The proof of who asks is the service's to sign.
            answer = approval.start(request.model_dump(mode="json", exclude={"requester_proof"}),
                                    wid)
        started = Started(workflow_id=str(answer.get("workflow_id") or wid),
                          run_id=answer.get("run_id"), worker_seen=True)
    else:
        requester = request.requested_by or "unknown"
        async with rpc_errors(settings):
            handle = await client.start_workflow(
                # The validated model, defaults filled in: history records every value the run used.
                m.WORKFLOW_TYPE, request, id=wid, task_queue=settings.task_queue,
                # Indexed at once, so `runbook list --incident` finds the run before its first task.
                search_attributes=TypedSearchAttributes([SearchAttributePair(sa.INCIDENT, incident)]),
                static_summary=f"Remediation of incident {incident}, requested by {requester}",
                static_details=(f"Started with `runbook start` for incident **{incident}** by "
                                f"**{requester}**. Approve gates with `runbook approve {wid} --gate "
                                "phase-1 --approver <you>` or the `approve` signal."),
            )
        started = Started(workflow_id=wid, run_id=handle.first_execution_run_id, worker_seen=True)
    try:
        await require_worker(client, settings)
    except CliError:
        started.worker_seen = False
    return started


async def run_plan(settings: Settings, request: RemediationRequest, timeout_s: float) -> Plan:
    client = await connect(settings)
    await require_worker(client, settings)
    incident = request.incident_id
    wid = new_workflow_id(incident, prefix="plan")
    try:
        async with rpc_errors(settings):
            return await client.execute_workflow(
                m.PLAN_WORKFLOW_TYPE, request, id=wid, task_queue=settings.task_queue,
                result_type=Plan, execution_timeout=timedelta(seconds=timeout_s),
                static_summary=f"Plan (read-only diagnosis) for incident {incident}",
            )
    except WorkflowFailureError as err:
        raise CliError(f"the plan could not be built: {_cause(err)}",
                       f"see the failed run in the UI: {settings.workflow_url(wid)}") from err


# --- looking at a run -----------------------------------------------------------------


@dataclass
class StatusView:
    description: WorkflowExecutionDescription
    status: RunStatus | None = None
    report: RemediationReport | None = None
    failure: str | None = None  # how the execution ended when it did not return a report

    @property
    def running(self) -> bool:
        return self.description.status == WorkflowExecutionStatus.RUNNING


async def _describe(client: Client, settings: Settings, wid: str) -> tuple[WorkflowHandle, WorkflowExecutionDescription]:
    handle = client.get_workflow_handle(wid)
    async with rpc_errors(settings, wid):
        return handle, await handle.describe()


async def get_status(settings: Settings, wid: str, client: Client | None = None) -> StatusView:
    client = client or await connect(settings)
    handle, desc = await _describe(client, settings, wid)
    view = StatusView(description=desc)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        # A closed run's report is in history: no worker needed to read it.
        try:
            # Completed, Failed with the report in its details, or Canceled with it in
            # the memo (runbook/outcome.py).
            view.report = await final_report(handle)
        except WorkflowFailureError as err:
            view.failure = _cause(err)
        except Exception as err:  # result of another shape, or terminated/cancelled
            view.failure = str(err)
    # Queries are answered by a worker (closed runs by replay). Without one a query only
    # times out, so check first: a closed run still has its report, a running one does not.
    worker_up: bool | None
    try:
        worker_up = bool(await live_pollers(client, settings.namespace, settings.task_queue))
    except RPCError:
        worker_up = None  # cannot tell: let the query decide
    if worker_up is False:
        if not view.running:
            return view
        attrs = desc.typed_search_attributes
        raise CliError(f"run {wid} is RUNNING (last recorded state {attrs.get(sa.STATE) or '?'}, "
                       f"phase {attrs.get(sa.PHASE) or '-'}), but no worker is polling task queue "
                       f"{settings.task_queue!r}, so its live status cannot be read", WORKER_HINT)
    try:
        view.status = await handle.query(m.QUERY_STATUS, result_type=RunStatus,
                                         rpc_timeout=timedelta(seconds=10))
    except (WorkflowQueryFailedError, RPCError) as err:
        if view.running and view.report is None:
            if isinstance(err, WorkflowQueryFailedError):  # the workflow's query handler raised
                raise CliError(f"run {wid}'s status query failed in the workflow: {_cause(err)}",
                               QUERY_FAILED_HINT) from err
            raise CliError(f"run {wid} did not answer the status query ({_cause(err)})",
                           QUERY_FAILED_HINT if worker_up else WORKER_HINT) from err
        # Closed and no worker to replay it: the report (or failure) is what we show.
    return view


async def list_runs(settings: Settings, incident: str | None, state: str | None,
                    limit: int) -> list[dict[str, Any]]:
    clauses = [f"WorkflowType = '{m.WORKFLOW_TYPE}'"]
    if incident:
        clauses.append(f"{m.SA_INCIDENT} = '{_quote(incident)}'")
    if state:
        valid = {s.value for s in RunState}
        if state.upper() not in valid:
            raise CliError(f"unknown state {state!r}", f"use one of {', '.join(sorted(valid))}")
        clauses.append(f"{m.SA_STATE} = '{state.upper()}'")
    query = " AND ".join(clauses)
    client = await connect(settings)
    rows = []
    async with rpc_errors(settings):
        async for wf in client.list_workflows(query, limit=limit):
            attrs = wf.typed_search_attributes
            rows.append({
                "workflow_id": wf.id, "run_id": wf.run_id,
                "execution": wf.status.name if wf.status else "",
                "incident": attrs.get(sa.INCIDENT), "state": attrs.get(sa.STATE),
                "phase": attrs.get(sa.PHASE), "started": wf.start_time, "closed": wf.close_time,
            })
    return rows


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


async def fetch_history(settings: Settings, wid: str) -> WorkflowHistory:
    client = await connect(settings)
    handle, _ = await _describe(client, settings, wid)
    async with rpc_errors(settings, wid):
        return await handle.fetch_history()


# --- acting on a run ------------------------------------------------------------------


async def _running_handle(settings: Settings, wid: str, what: str) -> tuple[Client, WorkflowHandle]:
    client = await connect(settings)
    handle, desc = await _describe(client, settings, wid)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        status = desc.status.name if desc.status else "closed"
        raise CliError(f"run {wid} is {status}: there is nothing to {what}",
                       f"see what happened with `runbook status {wid}` or `runbook audit {wid}`")
    return client, handle


async def _gate_hint(settings: Settings, client: Client, wid: str) -> str:
    """Where the run actually is, to turn a refusal into a next step."""
    try:
        st = (await get_status(settings, wid, client)).status
    except CliError:
        return f"check the run with `runbook status {wid}`"
    if st is None:
        return f"check the run with `runbook status {wid}`"
    if st.pending_gate is not None:
        g = st.pending_gate
        return (f"the pending gate is {g.id} ({len(g.approvals)}/{g.min_approvals} approvals); "
                f"run state {st.state.value}")
    return f"no gate is pending; run state {st.state.value} (see `runbook status {wid}`)"


async def send_gate_update(settings: Settings, wid: str, update: str, payload: Any,
                           timeout_s: float = 60.0) -> m.GateAck:
    verb = "approve" if update == m.UPDATE_APPROVE else "reject"
    return await send_update(settings, wid, update, payload, m.GateAck, verb, timeout_s)


async def send_update(settings: Settings, wid: str, update: str, payload: Any, result_type: type,
                      verb: str, timeout_s: float = 60.0) -> Any:
    """Send a validated update; a refusal becomes a CliError with where the run is."""
    client, handle = await _running_handle(settings, wid, verb)
    await require_worker(client, settings)
    try:
        async with rpc_errors(settings, wid):
            return await asyncio.wait_for(
                handle.execute_update(update, payload, result_type=result_type), timeout_s)
    except WorkflowUpdateFailedError as err:
        reason = _cause(err)
        raise CliError(f"refused: {reason}", await _gate_hint(settings, client, wid)) from err
    except asyncio.TimeoutError as err:
        raise CliError(f"the run did not answer the {verb} within {timeout_s:.0f}s", WORKER_HINT) from err


async def abort_direct(settings: Settings, wid: str, msg: m.AbortRequest) -> None:
    """Abort with the update, so a refusal is seen (a run under verified identities takes
    no unsigned abort). The signal where the update cannot answer: a run from before
    identity-1 has no such update, and with no worker polling the signal still waits in
    history for the next one (an abort must not need a live worker)."""
    try:
        await send_update(settings, wid, m.UPDATE_ABORT, msg, m.AbortAck, "abort")
    except CliError as err:
        refused = str(err).startswith("refused:") and "expected but not found" not in str(err)
        if refused:
            raise
        await send_signal(settings, wid, m.SIGNAL_ABORT, msg)


async def send_signal(settings: Settings, wid: str, signal: str, payload: Any) -> None:
    _, handle = await _running_handle(settings, wid, signal)
    async with rpc_errors(settings, wid):
        await handle.signal(signal, payload)
