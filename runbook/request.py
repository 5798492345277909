"""The request that starts a run. Every field has a default: ``{}`` runs RUNBOOK.md.

Static limits that Google Cloud documents are enforced here, so a request the API would
refuse fails before anything runs, with the field and the documented limit in the error.
Limits that depend on current state (counts only grow, the project's tier list) are
checked by the plan's preflight instead.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from runbook.activity_io import StartupProbe
from runbook.cloud_run_limits import (  # noqa: F401 - re-exported for existing importers
    CLOUD_RUN_CPUS,
    CLOUD_RUN_MEMORY_MAX_MIB,
    STARTUP_INITIAL_DELAY_MAX_S,
    STARTUP_THRESHOLD_WINDOW_MAX_S,
    STARTUP_WINDOW_MAX_S,
    EnvVars,
    cloud_run_memory_problem,
    memory_mib,
)
from runbook.cloud_sql_limits import cloud_sql_tier_problem
from runbook.credentials import looks_like_credential
from runbook.field_problems import (  # noqa: F401 - re-exported: the request's error API
    FieldProblem,
    FieldValueError,
    StrictInput,
    describe_problems,
    model_problems,
)
from runbook.envelope import MAX_ENVELOPE
from runbook.approval_policy import (  # noqa: F401 - re-exported for existing importers
    DAY_S,
    GATE_IDS,
    MAX_LIST,
    ApprovalPolicy,
    GatePolicy,
    Seconds,
    identity,
    identity_problem,
)
from runbook.leases import LeasePolicy
from runbook.notifications import NotificationRouting
from runbook.operator_policy import FailurePolicy, PausePolicy
from runbook import resource_names as names
from runbook.resource_names import (
    ComputeName,
    ConnectorName,
    HttpPath,
    ManagedDomain,
    ProjectId,
    RedisInstanceId,
    Region,
    RunServiceName,
    SecretId,
    SqlInstanceId,
)

# Re-exported: callers import the request's error API and gate ids from here.
__all__ = ["GATE_IDS", "FieldProblem", "GatePolicy", "RemediationRequest", "Targets",
           "describe_problems", "model_problems", "request_problems"]

CONNECTOR_MACHINE_TYPES = ("e2-micro", "f1-micro", "e2-standard-4")
MAX_SOAK_WINDOW_S = DAY_S
# A soak window is sampled at most this many times: each sample is history events.
MAX_SOAK_SAMPLES = 1440


_Strict = StrictInput


def _unique(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    repeated = [v for v in values if v in seen or seen.add(v)]
    if repeated:
        raise ValueError(f"{what} {names.shown(repeated[0])} is listed more than once")
    return values


class Targets(_Strict):
    project: ProjectId = "netra-staging"
    region: Region = "us-central1"
    connector: ConnectorName = "staging-connector"
    sql_instance: SqlInstanceId = "netra-staging-db"
    backend_service: RunServiceName = "netra-backend-staging"
    auth_service: RunServiceName = "auth-staging"
    health_checks: Annotated[dict[ComputeName, HttpPath], Field(max_length=MAX_LIST)] = Field(
        default_factory=lambda: {
            "staging-backend-health-check": "/health",
            "staging-auth-health-check": "/auth/health",
        },
        description="health check name -> request path",
    )
    backend_services: Annotated[list[ComputeName], Field(max_length=MAX_LIST)] = Field(
        default_factory=lambda: ["staging-backend-service", "staging-auth-service"]
    )
    certificate: ComputeName = "staging-netrasystems-ai-cert"
    # The load balancer's target HTTPS proxy: the certificate is attached to it (seed 004
    # §3.4), and its URL map tells which backend services are serverless.
    https_proxy: ComputeName = "staging-https-proxy"
    # Memorystore for Redis instance the services reach through the connector; None: none.
    redis_instance: RedisInstanceId | None = "staging-redis"
    # A Google-managed (classic Compute) certificate: 1-100 host names, no wildcards.
    certificate_domains: Annotated[list[ManagedDomain], Field(
        min_length=1, max_length=names.MANAGED_CERT_MAX_DOMAINS)] = Field(
        default_factory=lambda: ["staging.netrasystems.ai", "api-staging.netrasystems.ai"]
    )
    required_secrets: Annotated[list[SecretId], Field(max_length=100)] = Field(
        default_factory=lambda: [
            "database-url", "database-direct-url", "jwt-secret-staging", "redis-url",
            "oauth-client-id", "oauth-client-secret", "openai-api-key",
            "anthropic-api-key", "smtp-password", "cors-allowed-origins",
        ]
    )
    # Where phase 4 probes the application. None: the worker's configured app URL
    # (the simulator by default; set REMEDIATION_APP_URL for real GCP).
    app_url: str | None = None

    @field_validator("backend_services")
    @classmethod
    def _distinct_backends(cls, v: list[str]) -> list[str]:
        return _unique(v, "backend service")

    @field_validator("required_secrets")
    @classmethod
    def _distinct_secrets(cls, v: list[str]) -> list[str]:
        return _unique(v, "secret")

    @field_validator("certificate_domains")
    @classmethod
    def _distinct_domains(cls, v: list[str]) -> list[str]:
        return _unique(v, "domain")

    @field_validator("app_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        # https only (http to a loopback host, where the simulator serves the app in
        # rehearsals); never link-local or a metadata server: the worker probes this URL.
        from runbook.urls import endpoint_url_problem
        problem = endpoint_url_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v


class StartupProbePolicy(_Strict):
    """The Cloud Run startup probe the runbook deploys. The default is the longest window
    Cloud Run allows (240 s delay + 24 x 10 s): the seeds report 600-900 s starts during
    the outage, which no probe can tolerate; phase 1 fixes the connector and Cloud SQL
    first, which is what shortens a start that waits on them. The cost of the delay: no
    new instance serves before 240 s, so scale-out is slower."""

    path: HttpPath | None = "/health"  # null: a TCP probe
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    initial_delay_s: Annotated[int, Field(ge=0, le=STARTUP_INITIAL_DELAY_MAX_S)] = 240
    period_s: Annotated[int, Field(ge=1, le=240)] = 10
    timeout_s: Annotated[int, Field(ge=1, le=240)] = 5
    failure_threshold: Annotated[int, Field(ge=1, le=STARTUP_THRESHOLD_WINDOW_MAX_S)] = 24

    @model_validator(mode="after")
    def _cloud_run_limits(self) -> "StartupProbePolicy":
        if self.timeout_s > self.period_s:
            raise ValueError(f"timeout_s ({self.timeout_s}) may not exceed period_s ({self.period_s})")
        window = self.failure_threshold * self.period_s
        if window > STARTUP_THRESHOLD_WINDOW_MAX_S:
            raise ValueError(
                f"failure_threshold x period_s is {window}s; Cloud Run allows at most "
                f"{STARTUP_THRESHOLD_WINDOW_MAX_S}s (with initial_delay_s up to "
                f"{STARTUP_INITIAL_DELAY_MAX_S}s, no probe tolerates a start over "
                f"{STARTUP_WINDOW_MAX_S}s)")
        return self

    def probe(self) -> StartupProbe:
        return StartupProbe(**self.model_dump())


class DesiredState(_Strict):
    # VPC connector (documented: min 2-9, max 3-10, min < max).
    connector_machine_type: str = "e2-standard-4"
    connector_min_instances: int = 3
    connector_max_instances: int = 10
    # Cloud SQL.
    sql_tier: str = "db-custom-2-7680"
    # None keeps the new tier's default (400 for db-custom-2-7680, GCP_FIDELITY A8): the
    # seeds' 300 would LOWER the limit it meant to raise. A value lower than the tier's
    # default is allowed but warned about at the gate.
    sql_max_connections: Annotated[int, Field(ge=14, le=262143)] | None = None
    # Phase 1: incident env vars (extended timeouts for VPC connector latency).
    incident_env: EnvVars = Field(
        default_factory=lambda: {
            "DATABASE_INITIALIZATION_TIMEOUT": "90",
            "DATABASE_CONNECTION_TIMEOUT": "45",
        }
    )
    # Phase 2: backend configuration.
    backend_env: EnvVars = Field(
        default_factory=lambda: {
            "DATABASE_POOL_SIZE": "8",
            "DATABASE_MAX_OVERFLOW": "8",
            "DATABASE_POOL_TIMEOUT": "120",
            "VPC_CONNECTOR_SCALING_BUFFER": "30",
        }
    )
    backend_memory: str = "6Gi"  # with backend_cpu, within Cloud Run's table
    backend_cpu: str = "4"
    backend_min_instances: Annotated[int, Field(ge=0, le=1000)] = 2
    backend_max_instances: Annotated[int, Field(ge=1, le=1000)] = 15
    backend_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 900
    # Seeds 002/003/004: the backend needs 600-900 s to start during the outage. Behind a
    # serverless NEG the load balancer has no health checks; this probe decides readiness
    # (GCP_FIDELITY A2), up to Cloud Run's 480 s maximum.
    startup_probe: StartupProbePolicy = Field(default_factory=StartupProbePolicy)
    # Each service's template.vpcAccess: the target connector with this egress (seed 004:
    # "incorrect VPC connector / egress"). PRIVATE_RANGES_ONLY sends Cloud SQL and Redis
    # (private IPs) through the connector and keeps internet traffic off it.
    service_vpc_egress: Literal["PRIVATE_RANGES_ONLY", "ALL_TRAFFIC"] = "PRIVATE_RANGES_ONLY"
    # Load balancer.
    health_check_interval_s: Annotated[int, Field(ge=1, le=300)] = 30
    health_check_timeout_s: Annotated[int, Field(ge=1, le=300)] = 30
    health_check_healthy_threshold: Annotated[int, Field(ge=1, le=10)] = 2
    health_check_unhealthy_threshold: Annotated[int, Field(ge=1, le=10)] = 5
    # None: 600 s where the backend service takes a timeout, and nothing on a serverless
    # backend (Google fixes it at 60 min and refuses timeoutSec, GCP_FIDELITY A1). A
    # value set here on a serverless backend is refused at preflight.
    backend_service_timeout_s: Annotated[int, Field(ge=1, le=2147483647)] | None = None

    @field_validator("incident_env", "backend_env")
    @classmethod
    def _no_credentials(cls, v: dict[str, str]) -> dict[str, str]:
        named = sorted(k for k in v if looks_like_credential(k))
        if named:
            raise ValueError(
                f"{', '.join(named)} look(s) like credentials: a request is recorded in "
                "workflow history, so reference a Secret Manager secret in the service "
                "instead of passing a value here")
        return v

    @field_validator("connector_min_instances", "connector_max_instances")
    @classmethod
    def _connector_range(cls, v: int, info) -> int:
        lo, hi = (2, 9) if info.field_name == "connector_min_instances" else (3, 10)
        if not lo <= v <= hi:
            raise ValueError(
                f"{v} is outside the documented range {lo}-{hi} for a Serverless VPC Access "
                "connector (min 2-9, max 3-10, min < max; connectors do not scale down)")
        return v

    @field_validator("connector_machine_type")
    @classmethod
    def _machine_type(cls, v: str) -> str:
        if v not in CONNECTOR_MACHINE_TYPES:
            raise ValueError(f"must be one of {', '.join(CONNECTOR_MACHINE_TYPES)}")
        return v

    @field_validator("sql_tier")
    @classmethod
    def _tier(cls, v: str) -> str:
        problem = cloud_sql_tier_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("backend_cpu")
    @classmethod
    def _cpu(cls, v: str) -> str:
        if v not in CLOUD_RUN_CPUS:
            raise ValueError(f"must be one of {', '.join(CLOUD_RUN_CPUS)}")
        return v

    @field_validator("backend_memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        if memory_mib(v) > CLOUD_RUN_MEMORY_MAX_MIB:
            raise ValueError(f"{v} is above Cloud Run's maximum memory of "
                             f"{CLOUD_RUN_MEMORY_MAX_MIB // 1024}Gi (with 8 CPU)")
        return v

    @model_validator(mode="after")
    def _cross_field(self) -> "DesiredState":
        problems = []
        if self.connector_min_instances >= self.connector_max_instances:
            problems.append(("connector_min_instances", "connector_min_instances must be "
                             "lower than connector_max_instances"))
        if self.health_check_timeout_s > self.health_check_interval_s:
            problems.append(("health_check_timeout_s",
                             "health_check_timeout_s may not exceed health_check_interval_s "
                             f"({self.health_check_timeout_s} > {self.health_check_interval_s})"))
        if self.backend_min_instances > self.backend_max_instances:
            problems.append(("backend_min_instances",
                             "backend_min_instances may not exceed backend_max_instances"))
        memory_problem = cloud_run_memory_problem(self.backend_cpu, self.backend_memory)
        if memory_problem:
            problems.append(("backend_memory", memory_problem))
        if problems:
            raise FieldValueError(problems)
        return self


class PhaseBudgets(_Strict):
    phase_1_s: Seconds = 3600
    phase_2_s: Seconds = 3600
    phase_3_s: Seconds = 3600
    phase_4_s: Seconds = 3600
    # At budget x this factor the phase fails and the run rolls back.
    hard_limit_factor: Annotated[float, Field(ge=1.0, le=10.0)] = 2.0

    def budget_s(self, phase: int) -> int:
        return getattr(self, f"phase_{phase}_s")


class SoakPolicy(_Strict):
    # Zero 503s for this long, continuous, before phase 4 passes (0: no soak).
    window_s: Annotated[int, Field(ge=0, le=MAX_SOAK_WINDOW_S)] = 15 * 60
    sample_every_s: Annotated[int, Field(ge=1, le=3600)] = 60
    requests_per_sample: Annotated[int, Field(ge=1, le=1000)] = 20
    max_error_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01

    @model_validator(mode="after")
    def _bounded_samples(self) -> "SoakPolicy":
        samples = math.ceil(self.window_s / self.sample_every_s)
        if samples > MAX_SOAK_SAMPLES:
            raise FieldValueError([("sample_every_s", (
                f"a {self.window_s}s window sampled every {self.sample_every_s}s is {samples} "
                f"samples; at most {MAX_SOAK_SAMPLES} per window keep the run's history "
                f"bounded (sample every {math.ceil(self.window_s / MAX_SOAK_SAMPLES)}s or more)"))])
        return self


class RemediationRequest(_Strict):
    incident_id: str = "1278"
    # Who asked for the run, in their one spelling (runbook/identity.py); the two-person
    # rule forbids them approving it. Empty: not known.
    requested_by: str = ""
    # The approval service's signed proof that ``requested_by`` started this run (an
    # envelope, act "start"; checked at run start by activities/identity.py).
    requester_proof: str | None = Field(default=None, max_length=MAX_ENVELOPE)
    targets: Targets = Field(default_factory=Targets)
    desired: DesiredState = Field(default_factory=DesiredState)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    budgets: PhaseBudgets = Field(default_factory=PhaseBudgets)
    soak: SoakPolicy = Field(default_factory=SoakPolicy)
    # Recipient (a name on an escalation ladder) -> channel names configured on the
    # worker. Never URLs or keys: those are secrets and would land in history.
    notifications: NotificationRouting = Field(default_factory=NotificationRouting)
    # What to do when another run holds a lease on any of this run's targets.
    lease: LeasePolicy = Field(default_factory=LeasePolicy)
    # A step failing after its retries: roll back at once, or ask (a decision gate), per
    # phase; a bare "rollback" or "ask" applies to all phases (runbook/operator_policy.py).
    on_step_failure: FailurePolicy = Field(default_factory=FailurePolicy)
    # Whether budgets and gate deadlines keep running while the run is paused.
    pause: PausePolicy = Field(default_factory=PausePolicy)

    @field_validator("notifications", mode="before")
    @classmethod
    def _legacy_notifications(cls, v: object) -> object:
        return NotificationRouting.from_legacy(v)

    @field_validator("notifications")
    @classmethod
    def _recipients(cls, v: NotificationRouting) -> NotificationRouting:
        if len(v.routes) > MAX_LIST:
            raise ValueError(f"{len(v.routes)} routes; at most {MAX_LIST}")
        problems = []
        for recipient, channels in v.routes.items():
            problem = identity_problem(recipient)
            if problem:
                problems.append((f"routes.{names.shown(recipient)}", f"recipient: {problem}"))
            if len(channels) > MAX_LIST:
                problems.append((f"routes.{names.shown(recipient)}",
                                 f"{len(channels)} channels; at most {MAX_LIST}"))
        if problems:
            raise FieldValueError(problems)
        return v

    @field_validator("incident_id")
    @classmethod
    def _incident(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", v):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-'")
        return v

    @field_validator("requested_by")
    @classmethod
    def _requester(cls, v: str) -> str:
        return v and identity(v)

    @model_validator(mode="after")
    def _approvable(self) -> "RemediationRequest":
        problems = self.approval.quorum_problems(self.requested_by)
        if problems:
            raise FieldValueError([(f"approval.{field}", reason) for field, reason in problems])
        return self


def request_problems(raw: object) -> tuple[RemediationRequest | None, list[FieldProblem]]:
    """Validate a raw request; return the model or every problem, each naming its field."""
    return model_problems(RemediationRequest, raw)
