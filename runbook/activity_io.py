"""Typed inputs and outputs of every activity.

Conventions every mutating activity follows (the saga depends on them):
- It reads the current state first; if the resource is already as desired it changes
  nothing and returns ``changed=False`` (a repeat after a crash is a no-op).
- Before it issues a mutation it heartbeats ``MutationCheckpoint`` (the state it is about
  to replace, and the operation it started). A retried attempt resumes from that
  checkpoint, so ``before`` is always the state the *first* attempt found.
- ``StepOutcome.before`` is exactly what its compensation needs to restore.
- If it fails (or is cancelled) after issuing a mutation it raises an ``ApplicationError``
  whose first detail is the ``MutationCheckpoint``, so the workflow can still roll it back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from runbook.diagnosis import (  # noqa: F401 - re-exported: one contract module
    DiagnoseParams,
    ConnectorState,
    SqlInstanceState,
    StartupProbe,
    DEFAULT_STARTUP_PROBE,
    TrafficSplit,
    RunServiceState,
    HealthCheckState,
    BackendKind,
    BackendServiceState,
    LoadBalancerState,
    HttpsProxyState,
    RedisState,
    CertificateState,
    SecretState,
    Diagnosis,
)


class StepOutcome(BaseModel):
    """What a step did: the state it replaced and the state it left."""

    changed: bool
    resource: str = ""
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    detail: str = ""
    attempt: int = 1
    # Extra read results (probe figures, created resource names, secret states, ...).
    data: dict[str, Any] = Field(default_factory=dict)


class MutationCheckpoint(BaseModel):
    """Heartbeat/failure detail recorded before a mutation is issued."""

    resource: str
    before: dict[str, Any]
    operation: str | None = None
    # The verdict the attempt reached before its last effect: the change failed with this
    # message and what follows (a self-restore of ``before``) only puts the world back. A
    # resumed attempt finishes that restore and fails with the same verdict; it never
    # re-issues the change.
    failed: str | None = None
    # Operations of this change that ended in error. A retry must send a fresh request id
    # (compute's ``requestId`` hands back the same, failed, operation for a repeated id),
    # so the id a retry uses depends on how many failed before it.
    failed_operations: list[str] = Field(default_factory=list)
    # The change was sent and accepted (an operation started, or a synchronous call
    # returned). Until then a refusal (HTTP 4xx) means nothing changed.
    sent: bool = False
    # ``operation`` finished successfully: the change landed. A checkpoint naming an
    # operation that neither finished nor failed means the outcome is unknown (the
    # operation may still land).
    operation_done: bool = False


# The saga schedules a step's compensation under this activity id; the audit and
# ``runbook rollback`` read history by it.
UNDO_PREFIX = "undo-"


def undo_activity_id(step_id: str) -> str:
    return f"{UNDO_PREFIX}{step_id}"


def checkpoint_in(details: list[Any]) -> MutationCheckpoint | None:
    """The checkpoint among a failed step's decoded details: the step issued its change
    before failing (read by the workflow, and from history by ``runbook rollback``)."""
    for d in details:
        if isinstance(d, dict) and "before" in d and "resource" in d:
            try:
                return MutationCheckpoint.model_validate(d)
            except ValidationError:
                return None
    return None


class CompensationInput(BaseModel):
    """Input of every compensation activity: the forward step's params and record."""

    step_id: str
    params: dict[str, Any]
    outcome: StepOutcome


# --- phase 1 --------------------------------------------------------------------------


class ScaleConnectorParams(BaseModel):
    project: str
    region: str
    connector: str
    machine_type: str
    min_instances: int
    max_instances: int


class ExpandSqlParams(BaseModel):
    project: str
    instance: str
    tier: str
    # Flags to set; the activity merges them into the current list (PATCH replaces all).
    flags: dict[str, str]


class DeployRevisionParams(BaseModel):
    """Deploy a new revision of a Cloud Run service and wait until it is ready."""

    project: str
    region: str
    service: str
    env: dict[str, str] = Field(default_factory=dict)
    cpu: str | None = None
    memory: str | None = None
    min_instances: int | None = None
    max_instances: int | None = None
    timeout_s: int | None = None
    startup_probe: StartupProbe | None = None
    # template.vpcAccess: connector short name (in the service's project/region) and egress.
    vpc_connector: str | None = None
    vpc_egress: Literal["ALL_TRAFFIC", "PRIVATE_RANGES_ONLY"] | None = None


class RouteTrafficParams(BaseModel):
    project: str
    region: str
    service: str


class VerifyInfrastructureParams(BaseModel):
    project: str
    region: str
    connector: str
    sql_instance: str
    service: str
    # The size phase 1 asked for: verification fails if the connector is not there yet.
    connector_machine_type: str | None = None
    connector_min_instances: int | None = None
    connector_max_instances: int | None = None
    # RUNBOOK phase 1 success criteria, judged on the latest Cloud Monitoring point of the
    # last 5 minutes: fail at or above these fractions.
    max_connector_utilisation: float = 0.70
    max_db_connection_use: float = 0.75


class CheckRedisParams(BaseModel):
    """Read-only: the Memorystore instance is READY and reachable from each service, i.e.
    the services' connector sits on the instance's authorized network."""

    project: str
    region: str
    instance: str
    connector: str
    services: list[str]


# --- phase 2 --------------------------------------------------------------------------


class HealthCheckParams(BaseModel):
    project: str
    health_check: str
    check_interval_s: int
    timeout_s: int
    healthy_threshold: int
    unhealthy_threshold: int


class BackendServiceTimeoutParams(BaseModel):
    project: str
    backend_service: str
    timeout_s: int


class CheckSecretsParams(BaseModel):
    project: str
    secrets: list[str]


# --- phase 3 --------------------------------------------------------------------------


class AlertPolicyParams(BaseModel):
    project: str
    display_name: str
    metric_filter: str
    # When set, the condition is a ratio: metric_filter / denominator_filter.
    denominator_filter: str | None = None
    comparison: Literal["COMPARISON_GT", "COMPARISON_LT"] = "COMPARISON_GT"
    threshold: float
    duration_s: int = 300
    severity: Literal["CRITICAL", "ERROR", "WARNING"] = "WARNING"
    documentation: str = ""
    notification_channel_type: str | None = "email"
    # Must fit the metric's kind and value type (GCP_FIDELITY A4): ALIGN_RATE for a DELTA
    # count, ALIGN_PERCENTILE_99 for a DISTRIBUTION, ALIGN_MEAN for a GAUGE number.
    aligner: str = "ALIGN_MEAN"


class CertificateParams(BaseModel):
    project: str
    certificate: str
    domains: list[str]
    # How long the activity waits for PROVISIONING -> ACTIVE before giving up.
    wait_active_s: int = 1800
    # Attach the certificate to this target HTTPS proxy (keeping the certificates already
    # there): Google provisions a managed certificate only once a load balancer serves it.
    target_https_proxy: str | None = None


# --- phase 4 --------------------------------------------------------------------------


class ProbeParams(BaseModel):
    """One HTTP probe. ``base_url`` None means the backend's configured application URL."""

    base_url: str | None = None
    path: str
    max_latency_ms: int
    expect_status: int = 200


class WebSocketProbeParams(BaseModel):
    base_url: str | None = None
    path: str = "/ws"
    # The probe's auth token is worker configuration (REMEDIATION_PROBE_TOKEN), never a
    # request field, so no credential can reach workflow history.
    max_latency_ms: int = 5000


class SampleErrorRateParams(BaseModel):
    base_url: str | None = None
    path: str = "/health"
    requests: int = 20


class ErrorRateSample(BaseModel):
    requests: int
    errors_503: int
    errors_other: int
    max_latency_ms: int

    @property
    def error_rate(self) -> float:
        return (self.errors_503 + self.errors_other) / self.requests if self.requests else 0.0


# --- cleanup --------------------------------------------------------------------------


class DeleteOldRevisionsParams(BaseModel):
    project: str
    region: str
    service: str


# --- notify ---------------------------------------------------------------------------


class NotificationChannel(BaseModel):
    kind: Literal["log", "webhook"] = "log"
    url: str | None = None


class NotifyParams(BaseModel):
    run_id: str
    incident_id: str
    level: Literal["info", "reminder", "escalation", "breach", "outcome"]
    recipient: str
    subject: str
    body: str
    channels: list[NotificationChannel]


class NotifyOutcome(BaseModel):
    delivered: list[str]
    failed: list[str] = Field(default_factory=list)
