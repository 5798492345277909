"""The request that starts a run. Every field has a default: ``{}`` runs RUNBOOK.md.

Static limits that Google Cloud documents are enforced here, so a request the API would
refuse fails before anything runs, with the field and the documented limit in the error.
Limits that depend on current state (counts only grow, the project's tier list) are
checked by the plan's preflight instead.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runbook.activity_io import StartupProbe
from runbook.leases import LeasePolicy
from runbook.notifications import NotificationRouting
from runbook.credentials import looks_like_credential

CONNECTOR_MACHINE_TYPES = ("e2-micro", "f1-micro", "e2-standard-4")
CLOUD_RUN_CPUS = ("1", "2", "4", "8")
_SHARED_CORE_TIERS = ("db-f1-micro", "db-g1-small")
_CUSTOM_TIER = re.compile(r"^db-custom-(\d+)-(\d+)$")
_PERF_TIER = re.compile(r"^db-perf-optimized-N-(2|4|8|16|32|48|64|80|96|128)$")
_MEMORY = re.compile(r"^(\d+)(Mi|Gi)$")


def cloud_sql_tier_problem(tier: str) -> str | None:
    """Why ``tier`` is not a real Cloud SQL tier name, or None when it is."""
    if tier in _SHARED_CORE_TIERS or _PERF_TIER.match(tier):
        return None
    m = _CUSTOM_TIER.match(tier)
    if not m:
        return (
            f"{tier!r} is not a Cloud SQL tier; use db-f1-micro, db-g1-small, "
            "db-custom-<vCPU>-<MiB> (e.g. db-custom-2-7680) or db-perf-optimized-N-<vCPU>"
        )
    vcpu, mib = int(m.group(1)), int(m.group(2))
    if not (vcpu == 1 or (vcpu % 2 == 0 and 2 <= vcpu <= 96)):
        return f"{tier!r}: vCPU must be 1 or an even number up to 96"
    if mib % 256 or mib < 3840 or not (0.9 * 1024 * vcpu <= mib <= 6.5 * 1024 * vcpu):
        return f"{tier!r}: memory must be a multiple of 256 MiB, >= 3840, and 0.9-6.5 GiB per vCPU"
    return None


def memory_mib(memory: str) -> int:
    m = _MEMORY.match(memory)
    if not m:
        raise ValueError(f"{memory!r} is not a memory size like 512Mi or 6Gi")
    return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)


class _Strict(BaseModel):
    # Unknown keys are typos in an incident: refuse them rather than silently ignore.
    model_config = ConfigDict(extra="forbid")


class Targets(_Strict):
    project: str = "netra-staging"
    region: str = "us-central1"
    connector: str = "staging-connector"
    sql_instance: str = "netra-staging-db"
    backend_service: str = "netra-backend-staging"
    auth_service: str = "auth-staging"
    health_checks: dict[str, str] = Field(
        default_factory=lambda: {
            "staging-backend-health-check": "/health",
            "staging-auth-health-check": "/auth/health",
        },
        description="health check name -> request path",
    )
    backend_services: list[str] = Field(
        default_factory=lambda: ["staging-backend-service", "staging-auth-service"]
    )
    certificate: str = "staging-netrasystems-ai-cert"
    # The load balancer's target HTTPS proxy: the certificate is attached to it (seed 004
    # §3.4), and its URL map tells which backend services are serverless.
    https_proxy: str = "staging-https-proxy"
    # Memorystore for Redis instance the services reach through the connector; None: none.
    redis_instance: str | None = "staging-redis"
    certificate_domains: list[str] = Field(
        default_factory=lambda: ["staging.netrasystems.ai", "api-staging.netrasystems.ai"]
    )
    required_secrets: list[str] = Field(
        default_factory=lambda: [
            "database-url", "database-direct-url", "jwt-secret-staging", "redis-url",
            "oauth-client-id", "oauth-client-secret", "openai-api-key",
            "anthropic-api-key", "smtp-password", "cors-allowed-origins",
        ]
    )
    # Where phase 4 probes the application. None: the worker's configured app URL
    # (the simulator by default; set REMEDIATION_APP_URL for real GCP).
    app_url: str | None = None

    @field_validator("project", "region", "connector", "sql_instance", "backend_service",
                     "auth_service", "certificate", "https_proxy")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("app_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v


def cloud_run_memory_problem(cpu: str, memory: str) -> str | None:
    """Why Cloud Run refuses this cpu/memory pair (GCP_FIDELITY A6), or None.

    Source: Cloud Run "Configure memory limits" / "CPU limits" tables (second-generation
    execution environment: at least 512 MiB). Cloud Run answers 400 INVALID_ARGUMENT
    naming ``limits.memory``; checking here refuses the request before anything runs.
    """
    mib = memory_mib(memory)
    bounds = {"1": (512, 4096), "2": (512, 8192), "4": (2048, 16384), "8": (4096, 32768)}
    lo, hi = bounds.get(cpu, (512, 32768))
    if not lo <= mib <= hi:
        return (f"for {cpu} CPU, Cloud Run needs memory between {lo}Mi and {hi // 1024}Gi "
                f"inclusive (second generation); {memory} is outside")
    return None


# Cloud Run caps a startup probe's failureThreshold x periodSeconds at 240 s, and its
# initialDelaySeconds at 240 s: no probe tolerates a start longer than 480 s. Sources: the
# jobs and worker-pools health-check pages state the 240 s cap; for services, a public
# report (PolicyEngine/policyengine-api#3764) measured both caps. run_v2 Probe: period and
# initial delay at most 240 for a startup probe, timeout not above the period.
STARTUP_THRESHOLD_WINDOW_MAX_S = 240
STARTUP_INITIAL_DELAY_MAX_S = 240
STARTUP_WINDOW_MAX_S = STARTUP_INITIAL_DELAY_MAX_S + STARTUP_THRESHOLD_WINDOW_MAX_S


class StartupProbePolicy(_Strict):
    """The Cloud Run startup probe the runbook deploys. The default is the longest window
    Cloud Run allows (240 s delay + 24 x 10 s): the seeds report 600-900 s starts during
    the outage, which no probe can tolerate; phase 1 fixes the connector and Cloud SQL
    first, which is what shortens a start that waits on them. The cost of the delay: no
    new instance serves before 240 s, so scale-out is slower."""

    path: str | None = "/health"
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    initial_delay_s: Annotated[int, Field(ge=0, le=STARTUP_INITIAL_DELAY_MAX_S)] = 240
    period_s: Annotated[int, Field(ge=1, le=240)] = 10
    timeout_s: Annotated[int, Field(ge=1, le=240)] = 5
    failure_threshold: Annotated[int, Field(ge=1)] = 24

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError("must start with / (or be null for a TCP probe)")
        return v

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
    incident_env: dict[str, str] = Field(
        default_factory=lambda: {
            "DATABASE_INITIALIZATION_TIMEOUT": "90",
            "DATABASE_CONNECTION_TIMEOUT": "45",
        }
    )
    # Phase 2: backend configuration.
    backend_env: dict[str, str] = Field(
        default_factory=lambda: {
            "DATABASE_POOL_SIZE": "8",
            "DATABASE_MAX_OVERFLOW": "8",
            "DATABASE_POOL_TIMEOUT": "120",
            "VPC_CONNECTOR_SCALING_BUFFER": "30",
        }
    )
    backend_memory: str = "6Gi"
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
        memory_mib(v)
        return v

    @model_validator(mode="after")
    def _cross_field(self) -> "DesiredState":
        problems = []
        if self.connector_min_instances >= self.connector_max_instances:
            problems.append("connector_min_instances must be lower than connector_max_instances")
        if self.health_check_timeout_s > self.health_check_interval_s:
            problems.append(
                "health_check_timeout_s may not exceed health_check_interval_s "
                f"({self.health_check_timeout_s} > {self.health_check_interval_s})"
            )
        if self.backend_min_instances > self.backend_max_instances:
            problems.append("backend_min_instances may not exceed backend_max_instances")
        memory_problem = cloud_run_memory_problem(self.backend_cpu, self.backend_memory)
        if memory_problem:
            problems.append(f"backend_memory: {memory_problem}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class GatePolicy(_Strict):
    remind_after_s: Annotated[int, Field(gt=0)] = 15 * 60
    escalate_after_s: Annotated[int, Field(gt=0)] = 30 * 60
    timeout_s: Annotated[int, Field(gt=0)] = 2 * 60 * 60
    min_approvals: Annotated[int, Field(ge=1, le=10)] = 1
    # Empty: anyone may approve (still subject to the two-person rule).
    approvers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> "GatePolicy":
        if not self.remind_after_s <= self.escalate_after_s <= self.timeout_s:
            raise ValueError("need remind_after_s <= escalate_after_s <= timeout_s")
        return self


GATE_IDS = ("phase-1", "phase-2", "phase-3", "phase-4", "cleanup-revisions")


class ApprovalPolicy(_Strict):
    # The person who started the run may not approve it (two-person rule).
    two_person_rule: bool = True
    default: GatePolicy = Field(default_factory=GatePolicy)
    gates: dict[str, GatePolicy] = Field(default_factory=dict, description="per-gate overrides")

    @field_validator("gates")
    @classmethod
    def _known_gates(cls, v: dict[str, GatePolicy]) -> dict[str, GatePolicy]:
        unknown = sorted(set(v) - set(GATE_IDS))
        if unknown:
            raise ValueError(f"unknown gate(s) {unknown}; gates are {', '.join(GATE_IDS)}")
        return v

    def for_gate(self, gate_id: str) -> GatePolicy:
        return self.gates.get(gate_id, self.default)


class PhaseBudgets(_Strict):
    phase_1_s: Annotated[int, Field(gt=0)] = 3600
    phase_2_s: Annotated[int, Field(gt=0)] = 3600
    phase_3_s: Annotated[int, Field(gt=0)] = 3600
    phase_4_s: Annotated[int, Field(gt=0)] = 3600
    # At budget x this factor the phase fails and the run rolls back.
    hard_limit_factor: Annotated[float, Field(ge=1.0, le=10.0)] = 2.0

    def budget_s(self, phase: int) -> int:
        return getattr(self, f"phase_{phase}_s")


class SoakPolicy(_Strict):
    # Zero 503s for this long, continuous, before phase 4 passes.
    window_s: Annotated[int, Field(ge=0)] = 15 * 60
    sample_every_s: Annotated[int, Field(gt=0)] = 60
    requests_per_sample: Annotated[int, Field(ge=1, le=1000)] = 20
    max_error_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01


class RemediationRequest(_Strict):
    incident_id: str = "1278"
    # Who asked for the run; the two-person rule forbids them approving it.
    requested_by: str = ""
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

    @field_validator("notifications", mode="before")
    @classmethod
    def _legacy_notifications(cls, v: object) -> object:
        return NotificationRouting.from_legacy(v)

    @field_validator("incident_id")
    @classmethod
    def _incident(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", v):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-'")
        return v


class FieldProblem(BaseModel):
    field: str
    reason: str


def describe_problems(problems: list[FieldProblem]) -> str:
    return "; ".join(f"{p.field}: {p.reason}" for p in problems)


def request_problems(raw: object) -> tuple[RemediationRequest | None, list[FieldProblem]]:
    """Validate a raw request; return the model or every problem, each naming its field."""
    return model_problems(RemediationRequest, raw)


def model_problems(model: type[BaseModel], raw: object) -> tuple[Any, list[FieldProblem]]:
    """Validate a workflow's raw JSON input as ``model``: the model, or every problem, each
    naming its field (``{}`` and no input mean the defaults)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, [FieldProblem(field="(request)", reason="must be a JSON object")]
    try:
        return model.model_validate(raw), []
    except ValidationError as err:
        problems = []
        for e in err.errors(include_url=False):
            field = ".".join(str(p) for p in e["loc"]) or "(request)"
            reason = e["msg"].removeprefix("Value error, ")
            problems.append(FieldProblem(field=field, reason=reason))
        return None, problems
