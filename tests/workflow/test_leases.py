"""Target leases: the keeper workflow, the requester helper, and what a runbook leases."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from temporalio import workflow

# The sandbox re-imports this module for every requester run: pass everything through.
with workflow.unsafe.imports_passed_through():
    import pytest
    import pytest_asyncio
    from pydantic import BaseModel
    from temporalio.client import WorkflowFailureError, WorkflowHandle
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from activities.leases import LeaseActivities
    from rich.console import Console

    from cli.leases import ConflictingRun, conflicting_runs, render_conflicts
    from runbook.default_runbook import build_runbook
    from runbook.definition import StepSpec
    from runbook.leases import (
        LEASE_TASK_QUEUE,
        QUERY_LEASES,
        SIGNAL_LEASE_UPDATE,
        KeeperState,
        LeaseRequest,
        LeaseView,
        UnleasableStep,
        keeper_id,
        leased_resources,
        mutating_steps,
        overlapping,
        step_resources,
    )
    from runbook.request import RemediationRequest
    from workflows import lease_keeper
    from workflows.lease_holder import LeaseRefused, TargetLease


class RequesterInput(BaseModel):
    project: str
    resources: list[str]
    policy: str = "refuse"
    max_wait_s: int = 3600


@workflow.defn(name="LeaseTestRequester")
class LeaseTestRequester:
    """Acquire, hold until ``done``, release: the life of a run, without the runbook."""

    def __init__(self) -> None:
        self._lease = TargetLease()
        self._done = False
        self.changes = 0

    @workflow.run
    async def run(self, inp: RequesterInput) -> LeaseView:
        request = LeaseRequest(workflow_id=workflow.info().workflow_id, incident_id="test",
                               resources=inp.resources, policy=inp.policy,
                               requested_at=workflow.now())
        try:
            await self._lease.acquire(inp.project, request, inp.max_wait_s, self._changed)
        except LeaseRefused as err:
            return err.view
        await workflow.wait_condition(lambda: self._done)
        await self._lease.release()
        return self._lease.view

    def _changed(self) -> None:
        self.changes += 1

    @workflow.signal(name=SIGNAL_LEASE_UPDATE)
    def lease_update(self, payload: Any) -> None:
        self._lease.on_update(payload)

    @workflow.signal
    def done(self) -> None:
        self._done = True

    @workflow.query
    def view(self) -> LeaseView | None:
        return self._lease.view


@workflow.defn(name="TargetLeaseWorkflow")
class SilentKeeper:
    """A keeper that never answers (a stuck or missing lease worker), on its own queue."""

    @workflow.run
    async def run(self, state: Any = None) -> None:
        await workflow.wait_condition(lambda: False)


@pytest_asyncio.fixture(scope="module")
async def lease_env(time_skipping_env):
    """A requester worker, and one whose keeper never answers. The keepers' worker
    (worker.build_lease_worker: TargetLeaseWorkflow + describe_runs on LEASE_TASK_QUEUE, no
    workflow cache) serves the whole session (tests/conftest.py). The requester workers
    keep their cache: they outlive every requester run (each test ends its runs), and an
    uncached run answers each polled query with a full replay, which slows the whole
    test server down."""
    env = time_skipping_env
    tq, lost_tq = f"lease-req-{uuid.uuid4().hex[:8]}", f"lease-lost-{uuid.uuid4().hex[:8]}"
    requesters = Worker(env.client, task_queue=tq, workflows=[LeaseTestRequester],
                        activities=[LeaseActivities(env.client).acquire_lease])
    lost = Worker(env.client, task_queue=lost_tq, workflows=[LeaseTestRequester, SilentKeeper],
                  activities=[LeaseActivities(env.client, lost_tq).acquire_lease])
    async with requesters, lost:
        yield env, tq, lost_tq


def project() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


async def request(env, tq: str, proj: str, resources: list[str], **extra) -> WorkflowHandle:
    return await env.client.start_workflow(
        LeaseTestRequester.run, RequesterInput(project=proj, resources=resources, **extra),
        id=f"req-{uuid.uuid4().hex[:8]}", task_queue=tq)


async def view_until(handle: WorkflowHandle, ok: Callable[[LeaseView], bool]) -> LeaseView:
    for _ in range(200):
        v = await handle.query(LeaseTestRequester.view)
        if v is not None and ok(v):
            return v
        await asyncio.sleep(0.02)
    raise AssertionError(f"{handle.id}: lease view never matched; last {v}")


def state_is(name: str) -> Callable[[LeaseView], bool]:
    return lambda v: v.state == name


async def done(handle: WorkflowHandle) -> LeaseView:
    """Tell a requester its work is over (it releases), and wait for it to end."""
    await handle.signal(LeaseTestRequester.done)
    return await handle.result()


async def holder_and_waiter(env, tq: str, proj: str) -> tuple[WorkflowHandle, WorkflowHandle]:
    """Run a holds r1; run b (policy wait) is queued behind it."""
    a = await request(env, tq, proj, ["r1"])
    await view_until(a, state_is("granted"))
    b = await request(env, tq, proj, ["r1"], policy="wait")
    await view_until(b, state_is("queued"))
    return a, b


async def keeper_state(env, proj: str) -> KeeperState:
    return await env.client.get_workflow_handle(keeper_id(proj)).query(QUERY_LEASES, result_type=KeeperState)


async def keeper_until(env, proj: str, ok: Callable[[KeeperState], bool]) -> KeeperState:
    for _ in range(200):
        s = await keeper_state(env, proj)
        if ok(s):
            return s
        await asyncio.sleep(0.02)
    raise AssertionError(f"keeper of {proj} never matched; last {s}")


async def test_grant_release_and_idle_keeper_ends(lease_env):
    env, tq, _ = lease_env
    proj = project()
    a = await request(env, tq, proj, ["r1", "r2"])
    granted = await view_until(a, state_is("granted"))
    assert granted.keeper_id == keeper_id(proj) and granted.holders == []
    assert [h.workflow_id for h in (await keeper_state(env, proj)).holders] == [a.id]
    assert [c.workflow_id for c in await conflicting_runs(env.client, proj, ["r2", "x"])] == [a.id]
    assert await conflicting_runs(env.client, project(), ["r2"]) == []  # no keeper at all
    await a.signal(LeaseTestRequester.done)
    assert (await a.result()).state == "released"
    await keeper_until(env, proj, lambda s: not s.holders)
    # Idle for 10 minutes, the keeper ends, and a closed keeper holds nothing.
    await env.sleep(timedelta(minutes=10, seconds=5))
    final = await env.client.get_workflow_handle(keeper_id(proj), result_type=KeeperState).result()
    assert final.holders == [] and final.queue == []
    assert await conflicting_runs(env.client, proj, ["r1"]) == []


async def test_overlap_with_refuse_is_refused_at_once_naming_the_holder(lease_env):
    env, tq, _ = lease_env
    proj = project()
    a = await request(env, tq, proj, ["r1", "r2"])
    await view_until(a, state_is("granted"))
    b = await request(env, tq, proj, ["r2", "r3"], policy="refuse")
    refused = await b.result()
    assert refused.state == "refused"
    assert [(h.workflow_id, h.resources) for h in refused.holders] == [(a.id, ["r2"])]
    assert a.id in refused.reason
    assert [h.workflow_id for h in (await keeper_state(env, proj)).holders] == [a.id]
    await done(a)


async def test_overlap_with_wait_queues_then_is_granted_on_release(lease_env):
    env, tq, _ = lease_env
    proj = project()
    a = await request(env, tq, proj, ["r1"])
    await view_until(a, state_is("granted"))
    b = await request(env, tq, proj, ["r1"], policy="wait")
    queued = await view_until(b, state_is("queued"))
    assert queued.position == 1 and [h.workflow_id for h in queued.holders] == [a.id]
    assert [q.workflow_id for q in (await keeper_state(env, proj)).queue] == [b.id]
    await a.signal(LeaseTestRequester.done)
    await view_until(b, state_is("granted"))
    s = await keeper_state(env, proj)
    assert [h.workflow_id for h in s.holders] == [b.id] and s.queue == []
    await done(b)


async def test_non_overlapping_runs_are_both_granted(lease_env):
    env, tq, _ = lease_env
    proj = project()
    a = await request(env, tq, proj, ["r1"])
    b = await request(env, tq, proj, ["r2"], policy="refuse")
    await view_until(a, state_is("granted"))
    await view_until(b, state_is("granted"))
    assert sorted(h.workflow_id for h in (await keeper_state(env, proj)).holders) == sorted([a.id, b.id])
    for h in (a, b):
        await done(h)


async def test_lease_of_a_terminated_holder_is_recovered_by_the_next_request(lease_env):
    env, tq, _ = lease_env
    proj = project()
    a = await request(env, tq, proj, ["r1", "r2"])
    await view_until(a, state_is("granted"))
    await a.terminate("operator terminated it")  # runs no code: never releases
    b = await request(env, tq, proj, ["r2"], policy="refuse")
    await view_until(b, state_is("granted"))
    s = await keeper_state(env, proj)
    assert [h.workflow_id for h in s.holders] == [b.id]
    assert [(r.workflow_id, r.status, r.was, r.resources) for r in s.recovered] == [
        (a.id, "TERMINATED", "holder", ["r1", "r2"])]
    await done(b)


async def test_waiter_that_gives_up_leaves_the_line(lease_env):
    env, tq, _ = lease_env
    proj = project()
    a = await request(env, tq, proj, ["r1"])
    await view_until(a, state_is("granted"))
    b = await request(env, tq, proj, ["r1"], policy="wait", max_wait_s=60)
    await view_until(b, state_is("queued"))
    gave_up = await b.result()  # time skips past max_wait_s
    assert gave_up.state == "refused" and "waited more than 60s" in gave_up.reason
    assert [h.workflow_id for h in gave_up.holders] == [a.id]
    s = await keeper_until(env, proj, lambda s: not s.queue)
    assert [h.workflow_id for h in s.holders] == [a.id]
    await done(a)


async def test_cancelled_waiter_leaves_the_line(lease_env):
    env, tq, _ = lease_env
    proj = project()
    a, b = await holder_and_waiter(env, tq, proj)
    await b.cancel()
    with pytest.raises(WorkflowFailureError):
        await b.result()
    s = await keeper_until(env, proj, lambda s: not s.queue)
    assert [h.workflow_id for h in s.holders] == [a.id] and s.recovered == []
    await done(a)
    await keeper_until(env, proj, lambda s: not s.holders)


async def test_terminated_waiter_is_dropped_when_its_turn_comes(lease_env):
    env, tq, _ = lease_env
    proj = project()
    a, b = await holder_and_waiter(env, tq, proj)
    c = await request(env, tq, proj, ["r1"], policy="wait")
    await view_until(c, lambda v: v.state == "queued" and v.position == 2)
    await b.terminate("gone while waiting")
    await a.signal(LeaseTestRequester.done)
    await view_until(c, state_is("granted"))  # b's grant could not be delivered: c is next
    s = await keeper_state(env, proj)
    assert [h.workflow_id for h in s.holders] == [c.id] and s.queue == []
    assert [(r.workflow_id, r.was) for r in s.recovered] == [(b.id, "queued")]
    assert s.recovered[0].status.startswith("CLOSED")
    await done(c)


async def test_keeper_continues_as_new_with_its_state(lease_env, monkeypatch):
    """After MAX_MESSAGES_PER_RUN messages the keeper continues as new, holders and line
    intact. (Unsandboxed on its own queue, so the lowered limit applies.)"""
    env, _, _ = lease_env
    monkeypatch.setattr(lease_keeper, "MAX_MESSAGES_PER_RUN", 2)
    ltq, rtq = f"leases-can-{uuid.uuid4().hex[:6]}", f"req-can-{uuid.uuid4().hex[:6]}"
    proj = project()
    async with Worker(env.client, task_queue=ltq, workflows=[lease_keeper.TargetLeaseWorkflow],
                      activities=[LeaseActivities(env.client, ltq).describe_runs],
                      workflow_runner=UnsandboxedWorkflowRunner()), \
            Worker(env.client, task_queue=rtq, workflows=[LeaseTestRequester],
                   activities=[LeaseActivities(env.client, ltq).acquire_lease]):
        left = [await request(env, rtq, proj, ["r1"], policy="wait") for _ in range(3)]
        while left:  # grant order is arrival order, which the activities decide
            granted = await first_granted(left)
            await done(granted)
            left.remove(granted)
        s = await keeper_until(env, proj, lambda s: not s.holders and not s.queue)
        keeper = env.client.get_workflow_handle(keeper_id(proj))
        desc = await keeper.describe()
        # Its worker goes with this test: left running, its idle timer would fire with no
        # worker to take the task, and time skipping would stop for the whole session.
        await keeper.terminate("test over")
    assert desc.run_id != desc.raw_description.workflow_execution_info.first_run_id
    assert s.recovered == []  # every requester released: nothing taken back


async def first_granted(handles: list[WorkflowHandle]) -> WorkflowHandle:
    for _ in range(200):
        for h in handles:
            v = await h.query(LeaseTestRequester.view)
            if v is not None and v.state == "granted":
                return h
        await asyncio.sleep(0.02)
    raise AssertionError("no requester was granted")


async def test_keeper_that_never_answers_refuses(lease_env):
    env, _, lost_tq = lease_env
    proj = project()
    h = await request(env, lost_tq, proj, ["r1"], policy="wait")
    try:
        refused = await h.result()  # skips the 60 s answer timeout
    finally:
        await env.client.get_workflow_handle(keeper_id(proj)).terminate("test over")
    assert refused.state == "refused" and "did not answer within 60s" in refused.reason
    assert LEASE_TASK_QUEUE in refused.reason


# --- what a runbook leases (pure) -----------------------------------------------------


def _every_optional_step() -> RemediationRequest:
    return RemediationRequest.model_validate({
        "desired": {"backend_service_timeout_s": 600, "sql_max_connections": 500},
        "targets": {"redis_instance": "staging-redis"}})


@pytest.mark.parametrize("req", [RemediationRequest(), _every_optional_step()], ids=["default", "all-optional"])
def test_every_mutating_step_leases_at_least_one_resource(req):
    book = build_runbook(req)
    steps = mutating_steps(book)
    assert book.cleanup.step in steps and len(steps) >= 10
    for step in steps:
        assert step_resources(step), step.id
    names = leased_resources(book)
    assert names == sorted(set(names))
    p, r = "netra-staging", "us-central1"
    for expected in [f"projects/{p}/locations/{r}/connectors/staging-connector",
                     f"projects/{p}/instances/netra-staging-db",
                     f"projects/{p}/locations/{r}/services/netra-backend-staging",
                     f"projects/{p}/locations/{r}/services/auth-staging",
                     f"projects/{p}/global/healthChecks/staging-backend-health-check",
                     f"projects/{p}/global/backendServices/staging-auth-service",
                     f"projects/{p}/global/sslCertificates/staging-netrasystems-ai-cert",
                     f"projects/{p}/global/targetHttpsProxies/staging-https-proxy"]:
        assert expected in names
    assert sum(n.startswith(f"projects/{p}/alertPolicies/") for n in names) == 5


def test_a_mutating_step_naming_no_known_resource_raises():
    book = build_runbook(RemediationRequest())
    book.phases[0].steps.append(StepSpec(id="new-kind", summary="s", activity="resize_disk",
                                         params={"project": "p", "disk": "d"}))
    with pytest.raises(UnleasableStep, match="new-kind"):
        leased_resources(book)
    bad = StepSpec(id="bad-params", summary="s", activity="expand_sql", params={"project": "p"})
    with pytest.raises(UnleasableStep, match="bad-params"):
        step_resources(bad)
    # Read-only steps are not leased, whatever they name.
    book.phases[0].steps[-1].kind = "read"
    assert leased_resources(book) == leased_resources(build_runbook(RemediationRequest()))


def test_overlapping():
    assert overlapping(["b", "a", "c"], ["c", "a", "z"]) == ["a", "c"]
    assert overlapping(["a"], []) == []


def test_lease_refused_names_the_holders():
    view = LeaseView(keeper_id="k", state="refused", reason="policy refuse",
                     holders=[{"workflow_id": "run-1", "incident_id": "1278",
                               "since": datetime(2025, 1, 1, tzinfo=timezone.utc)}])
    err = LeaseRefused(view)
    assert "run-1 (incident 1278)" in str(err) and err.view is view and err.non_retryable


def test_render_conflicts_names_run_incident_resource_and_since():
    since = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
    console = Console(record=True, width=200)
    console.print(render_conflicts([
        ConflictingRun(workflow_id="remediation-1278-a", incident_id="1278", since=since,
                       resources=["projects/p/instances/db", "projects/p/global/healthChecks/h"]),
        ConflictingRun(workflow_id="remediation-9-b", since=since, queued=True,
                       resources=["projects/p/instances/db"])]))
    text = console.export_text()
    assert ("Run remediation-1278-a (incident 1278) holds projects/p/instances/db and 1 more "
            "since 2025-01-01 12:00:00 UTC") in text
    assert "Run remediation-9-b waits for projects/p/instances/db" in text
    assert render_conflicts([]).plain == ""
