"""The requester side of a target lease, used inside a run's workflow code.

The run owns one ``TargetLease``; its ``lease_update`` signal handler passes every payload
to ``on_update``. ``acquire`` asks the project's keeper (workflows/lease_keeper.py) through
the ``acquire_lease`` activity (signal-with-start) and waits for the keeper's answer;
``release`` gives the lease, or the place in line, back. Nothing here mutates a resource:
the run must not mutate before ``acquire`` returned, and must release only after its
rollback/cleanup is over.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Callable

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from runbook import activity_names as act
    from runbook.leases import (
        LEASE_TASK_QUEUE,
        SIGNAL_RELEASE_LEASE,
        AcquireLeaseInput,
        LeaseRequest,
        LeaseView,
        ReleaseLease,
        keeper_id,
    )

# The keeper answers within one workflow task of the signal; a minute of silence means
# no lease worker is running (or the keeper is stuck): refuse rather than mutate unleased.
ANSWER_TIMEOUT_S = 60
ACQUIRE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(seconds=10), maximum_attempts=4)


class LeaseRefused(ApplicationError):
    """The run may not change its targets: another run holds them (policy refuse), it
    waited longer than allowed, or the keeper could not be reached. Non-retryable, so an
    uncaught one fails the run instead of retrying its workflow task."""

    def __init__(self, view: LeaseView) -> None:
        holders = ", ".join(
            f"{h.workflow_id}" + (f" (incident {h.incident_id})" if h.incident_id else "")
            for h in view.holders) or "no run named"
        super().__init__(f"lease on the targets refused by {view.keeper_id}: "
                         f"{view.reason or 'held by another run'}; holders: {holders}",
                         view.model_dump(mode="json"), type="LeaseRefused", non_retryable=True)
        self.view = view


class TargetLease:
    def __init__(self) -> None:
        self.view: LeaseView | None = None
        self._keeper: str | None = None
        self._released = False
        self._final = False  # refused or released here: later keeper updates are stale
        self._version = 0
        self._last_keeper_at = None

    def on_update(self, payload: Any) -> None:
        """A ``lease_update`` from the keeper; stale, foreign or garbled payloads are ignored."""
        try:
            view = payload if isinstance(payload, LeaseView) else LeaseView.model_validate(payload)
        except ValidationError as err:
            workflow.logger.warning("ignored an unreadable lease update: %s", err.errors()[0]["msg"])
            return
        if self._keeper is None or view.keeper_id != self._keeper or self._final:
            return
        if (self._last_keeper_at and view.updated_at and view.updated_at < self._last_keeper_at):
            return
        self._last_keeper_at = view.updated_at
        self.view = view
        self._version += 1

    async def acquire(self, project: str, request: LeaseRequest, max_wait_s: int,
                      on_change: Callable[[], None]) -> LeaseView:
        """Ask for the lease and wait for it; returns the granted view or raises LeaseRefused."""
        self._keeper = keeper_id(project)
        self._released = self._final = False
        self._last_keeper_at = None
        self.view = LeaseView(keeper_id=self._keeper, state="requested", updated_at=workflow.now())
        on_change()
        seen = self._version
        # Shielded: a cancel lets the signal-with-start finish, so the release sent after
        # it reaches the keeper after the request (and the cancel is not swallowed).
        asking = asyncio.ensure_future(workflow.execute_activity(
            act.ACQUIRE_LEASE, AcquireLeaseInput(project=project, request=request),
            start_to_close_timeout=timedelta(seconds=30), retry_policy=ACQUIRE_RETRY,
            summary=f"lease {len(request.resources)} resource(s) from {self._keeper}"))
        try:
            try:
                await asyncio.shield(asking)
            except ActivityError as err:
                return await self._refuse(f"asking the lease keeper failed: {_cause(err)}", on_change)
            if self._version != seen:  # the keeper answered before the activity reported
                on_change()
            return await self._await_decision(max_wait_s, on_change)
        except asyncio.CancelledError:
            # The run was cancelled while asking or waiting: leave the line (after
            # CancelledError, new commands still run).
            if not asking.done():
                await workflow.wait([asking])
            if not asking.cancelled():
                asking.exception()  # retrieved: a failed request needs no release either
            await self.release()
            on_change()
            raise

    async def release(self) -> None:
        """Give the lease (or the place in line) back; failures are swallowed: the keeper
        takes back leases of runs that are no longer running."""
        if self._keeper is None or self._released:
            return
        self._released = self._final = True
        sending = asyncio.ensure_future(workflow.get_external_workflow_handle(self._keeper).signal(
            SIGNAL_RELEASE_LEASE, ReleaseLease(workflow_id=workflow.info().workflow_id)))
        try:
            # Shielded: a cancel arriving now must not drop the release signal.
            await asyncio.shield(sending)
        except asyncio.CancelledError:
            await workflow.wait_condition(sending.done)
            if not sending.cancelled() and sending.exception() is not None:
                workflow.logger.info("lease release not delivered to %s: %s", self._keeper,
                                     sending.exception())
            raise
        except FailureError as err:
            workflow.logger.info("lease release not delivered to %s: %s", self._keeper, err)
        if self.view is not None and self.view.state != "refused":
            self.view = self.view.model_copy(update={"state": "released", "position": None,
                                                     "updated_at": workflow.now()})

    async def _await_decision(self, max_wait_s: int, on_change: Callable[[], None]) -> LeaseView:
        started = workflow.now()
        if not await self._wait_change(ANSWER_TIMEOUT_S, on_change, lambda: self.view.state != "requested"):
            return await self._refuse(
                f"the lease keeper {self._keeper} did not answer within {ANSWER_TIMEOUT_S}s: is a "
                f"worker polling task queue {LEASE_TASK_QUEUE!r}?", on_change)
        while self.view.state == "queued":
            remaining = max_wait_s - (workflow.now() - started).total_seconds()
            if remaining <= 0 or not await self._wait_change(
                    remaining, on_change, lambda: self.view.state != "queued"):
                behind = ", ".join(h.workflow_id for h in self.view.holders)
                return await self._refuse(f"waited more than {max_wait_s}s in line behind {behind}",
                                          on_change)
        if self.view.state != "granted":
            self._final = True
            raise LeaseRefused(self.view)
        return self.view

    async def _wait_change(self, timeout_s: float, on_change: Callable[[], None],
                           done: Callable[[], bool]) -> bool:
        """Wait until ``done()``, calling on_change at every new view; False on timeout."""
        deadline = workflow.now() + timedelta(seconds=timeout_s)
        while not done():
            remaining = (deadline - workflow.now()).total_seconds()
            if remaining <= 0:
                return False
            seen = self._version
            try:
                await workflow.wait_condition(lambda: self._version != seen, timeout=remaining,
                                              timeout_summary="waiting for the lease keeper")
            except asyncio.TimeoutError:
                return False
            on_change()
        return True

    async def _refuse(self, reason: str, on_change: Callable[[], None]) -> LeaseView:
        """Leave the line (if in it), record why, and raise LeaseRefused."""
        holders = self.view.holders if self.view is not None else []
        await self.release()
        self.view = LeaseView(keeper_id=self._keeper or "", state="refused", holders=holders,
                              reason=reason, updated_at=workflow.now())
        on_change()
        raise LeaseRefused(self.view)


def _cause(err: BaseException) -> str:
    while getattr(err, "cause", None) is not None:
        err = err.cause  # type: ignore[assignment]
    return getattr(err, "message", None) or str(err)
