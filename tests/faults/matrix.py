"""The fault matrix, generated from the runbook data.

Every step with ``kind == "mutate"`` of ``build_runbook(RemediationRequest())`` (its phases
and its cleanup) is crossed with every fault kind that can reach the API call it makes.
Which call that is follows from the step's activity and params (``MUTATING_CALLS``: the
Google API, the HTTP verb and the resource path the activity mutates); which kinds apply
follows from that call (412 is Compute's optimistic locking, maintenance is Cloud SQL's,
a revision start failure needs a call that creates a revision, an operation fault needs
a long-running operation). Steps whose calls cannot be told apart by a fault (the alert
policies: the same POST, run in parallel) form one cell named after their parallel group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from runbook import activity_names as act
from runbook.default_runbook import build_runbook
from runbook.definition import PhaseSpec, Runbook, StepSpec
from runbook.request import RemediationRequest

Mutation = dict[str, Any]  # one entry of gcpsim's /_sim/mutations


@dataclass(frozen=True)
class MutatingCall:
    """The API call a mutating activity makes, as a gcpsim fault can match it."""

    api: str
    method: str
    # Substring of the request path (gcpsim fault ``resource``), from the step's params.
    path: Callable[[dict[str, Any]], str]
    # Substrings of the full resource names the step may change (mutation log).
    touches: Callable[[dict[str, Any]], tuple[str, ...]]
    long_running: bool = True
    creates_revision: bool = False
    # Tells this step's entries in the mutation log from a sibling's on the same path.
    owns: Callable[[dict[str, Any], Mutation], bool] = lambda _p, _m: True


def _display_name_is(params: dict[str, Any], m: Mutation) -> bool:
    body = m.get("after") or m.get("before") or {}
    return isinstance(body, dict) and body.get("displayName") == params["display_name"]


MUTATING_CALLS: dict[str, MutatingCall] = {
    act.SCALE_CONNECTOR: MutatingCall(
        "vpcaccess", "PATCH", lambda p: f"/connectors/{p['connector']}",
        lambda p: (f"/connectors/{p['connector']}",)),
    act.EXPAND_SQL: MutatingCall(
        "sqladmin", "PATCH", lambda p: f"/instances/{p['instance']}",
        lambda p: (f"/instances/{p['instance']}",)),
    act.DEPLOY_REVISION: MutatingCall(
        "run", "PATCH", lambda p: f"/services/{p['service']}",
        lambda p: (f"/services/{p['service']}",), creates_revision=True),
    act.ROUTE_TRAFFIC_TO_LATEST: MutatingCall(
        "run", "PATCH", lambda p: f"/services/{p['service']}",
        lambda p: (f"/services/{p['service']}",)),
    act.CONFIGURE_HEALTH_CHECK: MutatingCall(
        "compute", "PATCH", lambda p: f"/healthChecks/{p['health_check']}",
        lambda p: (f"/healthChecks/{p['health_check']}",)),
    act.SET_BACKEND_SERVICE_TIMEOUT: MutatingCall(
        "compute", "PATCH", lambda p: f"/backendServices/{p['backend_service']}",
        lambda p: (f"/backendServices/{p['backend_service']}",)),
    # The insert names the certificate in its body, not its path; the step then attaches
    # it to the proxy (a second mutation the verdict accounts for, not faulted here).
    act.ENSURE_CERTIFICATE: MutatingCall(
        "compute", "POST", lambda p: f"/projects/{p['project']}/global/sslCertificates",
        lambda p: (f"/sslCertificates/{p['certificate']}",
                   f"/targetHttpsProxies/{p['target_https_proxy']}")),
    act.ENSURE_ALERT_POLICY: MutatingCall(
        "monitoring", "POST", lambda p: f"/projects/{p['project']}/alertPolicies",
        lambda p: ("/alertPolicies/",), long_running=False, owns=_display_name_is),
    act.DELETE_OLD_REVISIONS: MutatingCall(
        "run", "DELETE", lambda p: f"/services/{p['service']}/revisions/",
        lambda p: (f"/services/{p['service']}/revisions/",)),
}

# Transient faults come in bursts of up to BURST calls, always fewer than the target
# step's attempts (its RetrySpec), so retrying can get past them.
BURST = 3


@dataclass(frozen=True)
class FaultKind:
    id: str
    # Whether retrying the step can get past the fault (the run must then SUCCEED);
    # otherwise the run must roll back completely.
    transient: Callable[[MutatingCall], bool]
    applies: Callable[[MutatingCall], bool]
    # The gcpsim fault (without its target filter), given the target step.
    spec: Callable[[StepSpec], dict[str, Any]]


def _http(status: int, reason: str | None = None, burst: bool = True
          ) -> Callable[[StepSpec], dict]:
    return lambda step: {"kind": "http", "status": status,
                         "count": min(BURST, step.retry.maximum_attempts - 1) if burst else 1,
                         **({"reason": reason} if reason else {})}


def _always(_call: MutatingCall) -> bool:
    return True


def _never(_call: MutatingCall) -> bool:
    return False


FAULT_KINDS: list[FaultKind] = [
    FaultKind("429-burst", _always, _always, _http(429, "rateLimitExceeded")),
    FaultKind("503-burst", _always, _always, _http(503)),
    FaultKind("403", _never, _always, _http(403, "forbidden", burst=False)),
    FaultKind("409-in-progress", _always, _always, _http(409, "operationInProgress")),
    FaultKind("412-stale-fingerprint", _always, lambda c: c.api == "compute",
              _http(412, "conditionNotMet")),
    # google.rpc INTERNAL: an operation that may succeed when repeated (GCP_FACTS §7).
    # A rollout that creates a revision and ends in error is that revision failing to
    # start (gcpsim marks it FAILED): the deploy restores the service and the run rolls back.
    FaultKind("operation-error", lambda c: not c.creates_revision, lambda c: c.long_running,
              lambda c: {"kind": "operation_error", "code": 13, "count": 1}),
    FaultKind("operation-hang", _never, lambda c: c.long_running,
              lambda c: {"kind": "operation_hang", "count": 1}),
    # Lasts the whole run: longer than the step's retries.
    FaultKind("sql-maintenance", _never, lambda c: c.api == "sqladmin",
              lambda c: {"kind": "sql_maintenance"}),
    FaultKind("revision-start-failure", _never, lambda c: c.creates_revision,
              lambda c: {"kind": "revision_start_failure", "count": 1}),
]


@dataclass(frozen=True)
class Target:
    """One or more steps a fault reaches through the same API call."""

    name: str
    steps: tuple[StepSpec, ...]
    phase: PhaseSpec | None  # None: the cleanup step
    call: MutatingCall

    @property
    def step_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.steps)

    def fault_filter(self) -> dict[str, Any]:
        return {"api": self.call.api, "method": self.call.method,
                "resource": self.call.path(self.steps[0].params)}


@dataclass(frozen=True)
class Cell:
    target: Target
    kind: FaultKind

    @property
    def id(self) -> str:
        return f"{self.target.name}/{self.kind.id}"

    @property
    def transient(self) -> bool:
        return self.kind.transient(self.target.call)

    def fault(self) -> dict[str, Any]:
        return {**self.target.fault_filter(), **self.kind.spec(self.target.steps[0])}


def mutating_steps(book: Runbook) -> list[tuple[StepSpec, PhaseSpec | None]]:
    found = [(s, p) for p in book.phases for s in p.steps if s.kind == "mutate"]
    if book.cleanup.step.kind == "mutate":
        found.append((book.cleanup.step, None))
    return found


def targets(book: Runbook | None = None) -> list[Target]:
    book = book or build_runbook(RemediationRequest())
    grouped: dict[tuple, list[tuple[StepSpec, PhaseSpec | None]]] = {}
    for step, phase in mutating_steps(book):
        call = MUTATING_CALLS.get(step.activity)
        if call is None:
            raise AssertionError(f"step {step.id}: activity {step.activity} has no entry in "
                                 "MUTATING_CALLS; say which API call it mutates")
        # Only concurrent steps are indistinguishable: sequential ones on the same path
        # are told apart by arming the fault when the target step starts.
        key = (call.api, call.method, call.path(step.params), step.parallel_group or step.id)
        grouped.setdefault(key, []).append((step, phase))
    out = []
    for members in grouped.values():
        steps = tuple(s for s, _ in members)
        name = steps[0].id if len(steps) == 1 else steps[0].parallel_group
        out.append(Target(name, steps, members[0][1], MUTATING_CALLS[steps[0].activity]))
    return out


def cells(book: Runbook | None = None) -> list[Cell]:
    return [Cell(t, k) for t in targets(book) for k in FAULT_KINDS if k.applies(t.call)]
