"""Target leases: one run at a time may change a given Google Cloud resource.

Models shared by the lease keeper workflow (workflows/lease_keeper.py), the run that
asks for a lease (workflows/lease_holder.py), the activities (activities/leases.py) and
the CLI, and the pure helpers: what a runbook may change (``leased_resources``), the
keeper's id and message names, and the keeper's state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runbook import activity_names as act
from runbook.activity_io import (
    AlertPolicyParams,
    BackendServiceTimeoutParams,
    CertificateParams,
    DeleteOldRevisionsParams,
    DeployRevisionParams,
    ExpandSqlParams,
    HealthCheckParams,
    RouteTrafficParams,
    ScaleConnectorParams,
)
from runbook.definition import Runbook, StepSpec

LeasePolicyName = Literal["refuse", "wait"]


class LeasePolicy(BaseModel):
    """Request field ``lease``: what a run does when another run holds its targets."""

    model_config = ConfigDict(extra="forbid")

    policy: LeasePolicyName = "refuse"
    # With ``wait``: how long to wait in line before giving up (ends REFUSED).
    max_wait_s: int = Field(default=3600, ge=60, le=24 * 3600)


class LeaseRequest(BaseModel):
    workflow_id: str
    incident_id: str = ""
    resources: list[str]
    policy: LeasePolicyName = "refuse"
    requested_at: datetime


class LeaseHolderInfo(BaseModel):
    workflow_id: str
    incident_id: str = ""
    since: datetime
    resources: list[str] = Field(default_factory=list)  # those that overlap the requester's


class LeaseView(BaseModel):
    """What the keeper tells a requester (signal ``lease_update``) and what its status shows."""

    keeper_id: str
    state: Literal["requested", "granted", "queued", "refused", "released"]
    holders: list[LeaseHolderInfo] = Field(default_factory=list)  # the conflicting runs
    position: int | None = None  # 1-based place in line while queued
    reason: str = ""
    updated_at: datetime | None = None


# --- names shared by the keeper, the requester, the activities and the CLI -------------

LEASE_TASK_QUEUE = "remediation-leases"
SIGNAL_REQUEST_LEASE = "request_lease"
SIGNAL_RELEASE_LEASE = "release_lease"
QUERY_LEASES = "leases"
# Keeper -> requester: every decision and change of place in line (a LeaseView).
SIGNAL_LEASE_UPDATE = "lease_update"


def keeper_id(project: str) -> str:
    """The workflow id of the lease keeper of one Google Cloud project."""
    return f"remediation-leases-{project}"


# --- the keeper's state (its query result and continue-as-new input) ------------------


class HeldLease(LeaseHolderInfo):
    """A granted lease: ``resources`` here are all the holder's, not just an overlap."""

    policy: LeasePolicyName = "refuse"


class RecoveredLease(BaseModel):
    """A lease or place in line the keeper took back from a run that can no longer
    release it (terminated, timed out, gone): kept for the audit."""

    workflow_id: str
    status: str  # the run's execution status (TERMINATED, TIMED_OUT, NOT_FOUND, ...) or why
    at: datetime
    resources: list[str] = Field(default_factory=list)
    was: Literal["holder", "queued"] = "holder"


class KeeperState(BaseModel):
    holders: list[HeldLease] = Field(default_factory=list)
    queue: list[LeaseRequest] = Field(default_factory=list)  # FIFO, first in line first
    recovered: list[RecoveredLease] = Field(default_factory=list)  # newest last, bounded


class AcquireLeaseInput(BaseModel):
    """Input of the ``acquire_lease`` activity (signal-with-start of the project's keeper)."""

    project: str
    request: LeaseRequest


class ReleaseLease(BaseModel):
    """Payload of the keeper's ``release_lease`` signal."""

    workflow_id: str


def overlapping(a: list[str], b: list[str]) -> list[str]:
    """The resources named in both lists, sorted."""
    return sorted(set(a) & set(b))


# --- what a runbook may change --------------------------------------------------------


class UnleasableStep(ValueError):
    """A mutating step whose params name no resource the lease knows how to name."""


def _service(p: DeployRevisionParams | RouteTrafficParams | DeleteOldRevisionsParams) -> list[str]:
    # Revisions and traffic belong to the service: one lease covers them all.
    return [f"projects/{p.project}/locations/{p.region}/services/{p.service}"]


def _certificate(p: CertificateParams) -> list[str]:
    names = [f"projects/{p.project}/global/sslCertificates/{p.certificate}"]
    if p.target_https_proxy:
        # The step re-points the proxy's certificate list (and the rollback restores it).
        names.append(f"projects/{p.project}/global/targetHttpsProxies/{p.target_https_proxy}")
    return names


# Activity name -> (its params model, the canonical Google resource names it may change).
# Compensations are not listed: they only undo what their forward step (leased) changed.
_RESOURCES: dict[str, tuple[type[BaseModel], Callable[[Any], list[str]]]] = {
    act.SCALE_CONNECTOR: (ScaleConnectorParams, lambda p: [
        f"projects/{p.project}/locations/{p.region}/connectors/{p.connector}"]),
    act.EXPAND_SQL: (ExpandSqlParams, lambda p: [f"projects/{p.project}/instances/{p.instance}"]),
    act.DEPLOY_REVISION: (DeployRevisionParams, _service),
    act.ROUTE_TRAFFIC_TO_LATEST: (RouteTrafficParams, _service),
    act.DELETE_OLD_REVISIONS: (DeleteOldRevisionsParams, _service),
    act.CONFIGURE_HEALTH_CHECK: (HealthCheckParams, lambda p: [
        f"projects/{p.project}/global/healthChecks/{p.health_check}"]),
    act.SET_BACKEND_SERVICE_TIMEOUT: (BackendServiceTimeoutParams, lambda p: [
        f"projects/{p.project}/global/backendServices/{p.backend_service}"]),
    # Alert policies get a numeric id from Google only when created: the display name is
    # what the step finds (and creates) a policy by.
    act.ENSURE_ALERT_POLICY: (AlertPolicyParams, lambda p: [
        f"projects/{p.project}/alertPolicies/{p.display_name}"]),
    act.ENSURE_CERTIFICATE: (CertificateParams, _certificate),
}


def step_resources(step: StepSpec) -> list[str]:
    """The canonical names of what a mutating step may change; raises UnleasableStep when
    its activity or params name nothing the lease knows (a new step type must not escape
    the lease silently)."""
    known = _RESOURCES.get(step.activity)
    if known is None:
        raise UnleasableStep(
            f"step {step.id!r}: activity {step.activity!r} mutates but names no resource the "
            "lease knows; add it to runbook.leases._RESOURCES")
    model, names = known
    try:
        params = model.model_validate(step.params)
    except ValidationError as err:
        raise UnleasableStep(f"step {step.id!r}: params are not {model.__name__}: {err}") from err
    found = [n for n in names(params) if n]
    if not found:
        raise UnleasableStep(f"step {step.id!r}: params name no resource")
    return found


def mutating_steps(book: Runbook) -> list[StepSpec]:
    steps = [s for phase in book.phases for s in phase.steps]
    return [s for s in [*steps, book.cleanup.step] if s.kind == "mutate"]


def leased_resources(book: Runbook) -> list[str]:
    """Every resource the runbook's mutating steps (phases and cleanup) may change, sorted."""
    return sorted({name for step in mutating_steps(book) for name in step_resources(step)})
