"""TargetLeaseWorkflow: the lease keeper of one Google Cloud project.

One keeper per project (workflow id ``remediation-leases-<project>``, task queue
``remediation-leases``), reached with signal-with-start, so runs started from the CLI and
from the Temporal UI meet the same keeper. A run asks for a lease on every resource its
runbook may change before its first mutation and releases it after its rollback/cleanup.

Grant rule (FIFO): a request is granted at once when its resources overlap no holder and
no earlier queued request. Otherwise, by the request's policy, it is refused at once
(naming the holders, or the queued runs, in its way) or queued, and told its place in
line. Every decision and every change of place is signalled to the requester
(``lease_update``); a requester that can no longer be signalled (closed, gone) loses its
lease or place. A release grants whoever is now first eligible, in FIFO order.

Recovery: a run that is terminated or times out runs no code, so it never releases.
Whenever a request conflicts with someone, and every 60 s while anyone waits in line (every
10 min while there are only holders), the keeper asks Temporal for the execution status of
the runs in the way (activity ``describe_runs``) and takes back the lease or place of every
run that is no longer RUNNING, recording who, its status, when and its resources in
``recovered`` (query ``leases``), before it decides. If Temporal cannot be asked, nothing
is taken back.

History stays bounded: after 500 messages, or when Temporal suggests it, the keeper
continues as new with its state; idle (no holder, no one in line) for 10 minutes, it ends.
Messages are handled one at a time under one lock.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from runbook import activity_names as act
    from runbook.leases import (
        QUERY_LEASES,
        SIGNAL_LEASE_UPDATE,
        SIGNAL_RELEASE_LEASE,
        SIGNAL_REQUEST_LEASE,
        HeldLease,
        KeeperState,
        LeaseHolderInfo,
        LeaseRequest,
        LeaseView,
        RecoveredLease,
        ReleaseLease,
        overlapping,
    )

CHECK_INTERVAL_S = 60  # liveness check of the runs in the way while anyone waits in line
HOLDER_CHECK_S = 600  # the same with only holders, so a dead holder does not linger forever
IDLE_COMPLETE_S = 600
MAX_MESSAGES_PER_RUN = 500
MAX_RECOVERED = 100  # audit entries carried over continue-as-new
RUNNING = "RUNNING"
DESCRIBE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)


@workflow.defn(name="TargetLeaseWorkflow")
class TargetLeaseWorkflow:
    @workflow.init
    def __init__(self, state: KeeperState | None = None) -> None:
        self._state = (state or KeeperState()).model_copy(deep=True)
        self._lock = asyncio.Lock()
        self._handled = 0
        self._changes = 0
        self._last_change = workflow.now()
        # What each requester was last told (state, position, runs in the way): a place in
        # line is re-sent only when it changes.
        self._told: dict[str, tuple] = {}

    @workflow.run
    async def run(self, state: KeeperState | None = None) -> KeeperState:
        while True:
            await self._serve_until_idle_or_full()
            # No await between this wait and the return/continue-as-new: no handler can
            # slip in and be lost.
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self._must_continue_as_new():
                workflow.continue_as_new(self._state)
            if self._idle_for() >= IDLE_COMPLETE_S:
                return self._state

    @workflow.signal(name=SIGNAL_REQUEST_LEASE, description="A run asks for a lease (LeaseRequest)")
    async def request_lease(self, *payloads: Any) -> None:
        # Any arity, decoded here: a signal without input (or a malformed one) must never
        # fail this shared keeper's workflow task, which would stall every lease of the
        # project. It is logged and dropped; the sender's run sees no answer and times out.
        request = _one(LeaseRequest, payloads, SIGNAL_REQUEST_LEASE)
        if request is None:
            return
        async with self._lock:
            self._touch()
            await self._decide(request)

    @workflow.signal(name=SIGNAL_RELEASE_LEASE, description='A run gives its lease or place back: {"workflow_id": ...}')
    async def release_lease(self, *payloads: Any) -> None:
        msg = _one(ReleaseLease, payloads, SIGNAL_RELEASE_LEASE)
        if msg is None:
            return
        async with self._lock:
            self._touch()
            if self._remove(msg.workflow_id) is not None:
                self._told.pop(msg.workflow_id, None)
                await self._grant_eligible()

    @workflow.query(name=QUERY_LEASES, description="Holders, the line, and leases taken back from dead runs")
    def leases(self) -> KeeperState:
        return self._state

    # --- the main loop --------------------------------------------------------------

    async def _serve_until_idle_or_full(self) -> None:
        while not self._must_continue_as_new():
            s = self._state
            if s.queue:
                timeout: float | None = CHECK_INTERVAL_S
            elif s.holders:
                timeout = HOLDER_CHECK_S
            else:
                timeout = IDLE_COMPLETE_S - self._idle_for()
                if timeout <= 0:
                    return
            seen = self._changes
            try:
                await workflow.wait_condition(
                    lambda: self._changes != seen or self._must_continue_as_new(),
                    timeout=timeout, timeout_summary="lease liveness check / idle end")
            except asyncio.TimeoutError:
                if s.holders or s.queue:
                    async with self._lock:
                        await self._recover([e.workflow_id for e in [*s.holders, *s.queue]])
                        await self._grant_eligible()

    def _must_continue_as_new(self) -> bool:
        return (self._handled >= MAX_MESSAGES_PER_RUN
                or workflow.info().is_continue_as_new_suggested())

    def _touch(self) -> None:
        self._handled += 1
        self._changes += 1
        self._last_change = workflow.now()

    def _idle_for(self) -> float:
        if self._state.holders or self._state.queue:
            return 0.0
        return (workflow.now() - self._last_change).total_seconds()

    # --- decisions --------------------------------------------------------------------

    async def _decide(self, request: LeaseRequest) -> None:
        s = self._state
        known = self._find(request.workflow_id)
        if known is not None and sorted(known.resources) == sorted(request.resources):
            # A repeat (a retried activity, a re-sent signal): answer with where it stands.
            await self._tell(request.workflow_id, self._view_of(request.workflow_id), force=True)
            return
        if known is not None:
            # The same workflow id asks for other resources: a new run reusing the id.
            self._remove(request.workflow_id)
            self._record(known, "SUPERSEDED by a new request from the same workflow id",
                         "holder" if isinstance(known, HeldLease) else "queued")
            await self._grant_eligible()
        if self._in_way(request, s.holders) or self._in_way(request, s.queue):
            await self._recover([e.workflow_id for e in [*self._in_way(request, s.holders),
                                                         *self._in_way(request, s.queue)]])
            await self._grant_eligible()  # those already in line come first
        if not self._in_way(request, s.holders) and not self._in_way(request, s.queue):
            s.holders.append(self._held(request))
            await self._grant_delivered(request)
        elif request.policy == "refuse":
            view = self._view(request, "refused")
            names = ", ".join(h.workflow_id for h in view.holders)
            view.reason = f"policy refuse: {names} hold(s) or wait(s) for the same resources"
            await self._tell(request.workflow_id, view, force=True)
        else:
            s.queue.append(request)
            await self._notify_queue()

    async def _grant_eligible(self) -> None:
        """Grant, in FIFO order, every queued request no holder or earlier request blocks;
        then tell those still waiting their (new) place."""
        s = self._state
        progress = True
        while progress:
            progress = False
            for i, req in enumerate(s.queue):
                if self._in_way(req, s.holders) or self._in_way(req, s.queue[:i]):
                    continue
                s.queue.pop(i)
                s.holders.append(self._held(req))
                await self._grant_delivered(req)
                progress = True
                break
        await self._notify_queue()

    async def _grant_delivered(self, req: LeaseRequest) -> None:
        if not await self._tell(req.workflow_id, self._view(req, "granted")):
            self._remove(req.workflow_id)
            self._record(req, "CLOSED: the grant could not be delivered", "queued")

    async def _notify_queue(self) -> None:
        s = self._state
        i = 0
        while i < len(s.queue):
            req = s.queue[i]
            view = self._view(req, "queued", position=i + 1)
            if not await self._tell(req.workflow_id, view):
                s.queue.pop(i)
                self._record(req, "CLOSED: its place in line could not be delivered", "queued")
                await self._grant_eligible()  # leaving the line may unblock those behind
                return
            i += 1

    async def _recover(self, workflow_ids: list[str]) -> None:
        """Take back the lease or place of every run in ``workflow_ids`` no longer RUNNING."""
        ids = sorted(set(workflow_ids))
        if not ids:
            return
        try:
            statuses: dict[str, str] = await workflow.execute_activity(
                act.DESCRIBE_RUNS, ids, start_to_close_timeout=timedelta(seconds=30),
                retry_policy=DESCRIBE_RETRY, result_type=dict[str, str],
                summary=f"liveness of {len(ids)} run(s) holding or waiting for leases")
        except ActivityError as err:
            # Not knowing is not dead: keep every lease.
            workflow.logger.warning("lease liveness check failed: %s", err)
            return
        s = self._state
        for entry in [*s.holders, *s.queue]:
            status = statuses.get(entry.workflow_id, RUNNING)
            if status != RUNNING:
                self._remove(entry.workflow_id)
                self._told.pop(entry.workflow_id, None)
                self._record(entry, status, "holder" if isinstance(entry, HeldLease) else "queued")

    # --- state helpers ------------------------------------------------------------------

    def _find(self, workflow_id: str) -> HeldLease | LeaseRequest | None:
        s = self._state
        return next((e for e in [*s.holders, *s.queue] if e.workflow_id == workflow_id), None)

    def _remove(self, workflow_id: str) -> HeldLease | LeaseRequest | None:
        found = self._find(workflow_id)
        s = self._state
        s.holders = [h for h in s.holders if h.workflow_id != workflow_id]
        s.queue = [q for q in s.queue if q.workflow_id != workflow_id]
        return found

    def _record(self, entry: HeldLease | LeaseRequest, status: str, was: str) -> None:
        self._state.recovered.append(RecoveredLease(
            workflow_id=entry.workflow_id, status=status, at=workflow.now(),
            resources=list(entry.resources), was=was))
        del self._state.recovered[:-MAX_RECOVERED]
        self._changes += 1
        self._last_change = workflow.now()  # idle time counts from the last change

    @staticmethod
    def _in_way(req: LeaseRequest, entries: list) -> list:
        return [e for e in entries
                if e.workflow_id != req.workflow_id and overlapping(e.resources, req.resources)]

    @staticmethod
    def _held(req: LeaseRequest) -> HeldLease:
        return HeldLease(workflow_id=req.workflow_id, incident_id=req.incident_id,
                         since=workflow.now(), resources=list(req.resources), policy=req.policy)

    def _view(self, req: LeaseRequest, state: str, position: int | None = None) -> LeaseView:
        """The requester's view: the runs in its way are the overlapping holders or,
        when none, the overlapping requests ahead of it in line."""
        s = self._state
        ahead = s.queue[:position - 1] if position else s.queue
        in_way = self._in_way(req, s.holders) or self._in_way(req, ahead)
        holders = [LeaseHolderInfo(
            workflow_id=e.workflow_id, incident_id=e.incident_id,
            since=e.since if isinstance(e, HeldLease) else e.requested_at,
            resources=overlapping(e.resources, req.resources)) for e in in_way]
        if state == "granted":
            holders = []
        reason = f"waiting behind {', '.join(h.workflow_id for h in holders)}" if state == "queued" else ""
        return LeaseView(keeper_id=workflow.info().workflow_id, state=state, holders=holders,
                         position=position, reason=reason, updated_at=workflow.now())

    def _view_of(self, workflow_id: str) -> LeaseView:
        s = self._state
        held = next((h for h in s.holders if h.workflow_id == workflow_id), None)
        if held is not None:
            return self._view(LeaseRequest(workflow_id=held.workflow_id, resources=held.resources,
                                           requested_at=held.since), "granted")
        i = next(i for i, q in enumerate(s.queue) if q.workflow_id == workflow_id)
        return self._view(s.queue[i], "queued", position=i + 1)

    async def _tell(self, workflow_id: str, view: LeaseView, force: bool = False) -> bool:
        """Signal ``view`` to the requester unless it already knows it; False when the
        requester cannot be signalled (closed or gone)."""
        key = (view.state, view.position, tuple(h.workflow_id for h in view.holders))
        if not force and self._told.get(workflow_id) == key:
            return True
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal(SIGNAL_LEASE_UPDATE, view)
        except FailureError as err:
            workflow.logger.info("lease update to %s not delivered: %s", workflow_id, err)
            self._told.pop(workflow_id, None)
            return False
        self._told[workflow_id] = key
        return True


def _one(model: Any, payloads: tuple[Any, ...], signal: str) -> Any:
    """The one payload of a signal as ``model``, or None (logged) when it is not that."""
    if len(payloads) != 1:
        workflow.logger.warning("lease keeper: signal %s ignored: expected one input, got %d",
                                signal, len(payloads))
        return None
    try:
        return model.model_validate(payloads[0])
    except Exception as err:  # noqa: BLE001 - a malformed signal must never fail the keeper
        workflow.logger.warning("lease keeper: signal %s ignored: %s", signal,
                                str(err)[:300])
        return None
