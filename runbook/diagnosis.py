"""The read-only diagnosis: what it reads (``DiagnoseParams``) and the snapshot of every
target it returns (``Diagnosis``), including the load-balancer topology.

Part of the activity contract; ``runbook.activity_io`` re-exports every name here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field



class DiagnoseParams(BaseModel):
    project: str
    region: str
    connector: str
    sql_instance: str
    run_services: list[str]
    health_checks: list[str]
    backend_services: list[str]
    certificate: str
    required_secrets: list[str]
    alert_policy_names: list[str] = Field(default_factory=list)
    # The target HTTPS proxy the certificate is attached to; its forwarding rules and URL
    # map are read too, so the plan knows what fronts each backend service.
    https_proxy: str | None = None
    # Memorystore for Redis instance (short name) the services reach through the connector.
    redis_instance: str | None = None


class ConnectorState(BaseModel):
    name: str
    state: str
    machine_type: str
    min_instances: int
    max_instances: int


class SqlInstanceState(BaseModel):
    name: str
    state: str
    database_version: str
    tier: str
    flags: dict[str, str] = Field(default_factory=dict)
    edition: str = ""  # settings.edition: ENTERPRISE | ENTERPRISE_PLUS ("" when not read)
    # The max_connections range flags.list reports, for preflight. (tiers.list is not
    # read: GCP_FIDELITY A9; older diagnoses' available_tiers is ignored on parse.)
    max_connections_min: int | None = None
    max_connections_max: int | None = None


class StartupProbe(BaseModel):
    """A Cloud Run container's startup probe (run_v2 ``Probe``). With a serverless NEG the
    load balancer sends no health checks: this probe alone decides when a new revision is
    ready (GCP_FIDELITY A2). ``path`` None means a TCP probe on the container port."""

    path: str | None = "/health"
    port: int | None = None
    initial_delay_s: int = 0
    period_s: int = 10
    timeout_s: int = 5
    failure_threshold: int = 3

    def window_s(self) -> int:
        """How long a container may take to start before the revision fails."""
        return self.initial_delay_s + self.failure_threshold * self.period_s


# Cloud Run's startup probe when a container sets none: TCP, every 240 s, once
# (run_v2 Probe defaults as documented for Cloud Run; a window of 240 s).
DEFAULT_STARTUP_PROBE = StartupProbe(path=None, initial_delay_s=0, period_s=240, timeout_s=240,
                                     failure_threshold=1)


class TrafficSplit(BaseModel):
    revision: str  # short revision name, or "LATEST"
    percent: int


class RunServiceState(BaseModel):
    name: str
    ready: bool
    latest_ready_revision: str
    latest_created_revision: str
    revisions: list[str]
    traffic: list[TrafficSplit]
    env: dict[str, str] = Field(default_factory=dict)
    cpu: str = ""
    memory: str = ""
    min_instances: int = 0
    max_instances: int = 100
    timeout_s: int = 300
    # template.vpcAccess: the connector's short name ("" when none) and egress setting.
    vpc_connector: str = ""
    vpc_egress: str = ""
    # None: the container sets no startup probe (Cloud Run's default applies).
    startup_probe: StartupProbe | None = None

    def old_revisions(self) -> list[str]:
        """Revisions nothing routes to: neither named in the traffic split nor the latest
        ready one (which LATEST resolves to). What the cleanup step deletes."""
        serving = {t.revision for t in self.traffic} | {self.latest_ready_revision}
        return [r for r in self.revisions if r not in serving]


class HealthCheckState(BaseModel):
    name: str
    check_interval_s: int
    timeout_s: int
    healthy_threshold: int
    unhealthy_threshold: int
    request_path: str = ""


# What serves a backend service, read from its backends' groups.
BackendKind = Literal["SERVERLESS", "INSTANCE_GROUP", "ZONAL_NEG", "OTHER", "UNKNOWN"]


class BackendServiceState(BaseModel):
    name: str
    timeout_s: int
    # UNKNOWN: not read (diagnoses recorded before the topology was read).
    backend_kind: BackendKind = "UNKNOWN"
    # Cloud Run services behind its serverless NEGs (short names).
    cloud_run_services: list[str] = Field(default_factory=list)
    # Health checks attached (short names); a serverless backend never has any.
    health_checks: list[str] = Field(default_factory=list)
    # The group URLs of its backends, as the API returned them.
    groups: list[str] = Field(default_factory=list)


class LoadBalancerState(BaseModel):
    """One global external HTTPS load balancer: forwarding rule -> target HTTPS proxy
    -> URL map -> backend services."""

    forwarding_rule: str
    ip_address: str
    target_proxy: str
    certificates: list[str] = Field(default_factory=list)  # short names on the proxy
    url_map: str = ""
    backend_services: list[str] = Field(default_factory=list)  # short names the map routes to


class HttpsProxyState(BaseModel):
    name: str
    exists: bool
    certificates: list[str] = Field(default_factory=list)  # short names, in order
    url_map: str = ""
    # Forwarding rules targeting it and their IP addresses.
    forwarding_rules: list[str] = Field(default_factory=list)
    ip_addresses: list[str] = Field(default_factory=list)


class RedisState(BaseModel):
    name: str
    exists: bool
    state: str = ""  # READY, CREATING, ... ("" when missing)
    host: str = ""
    port: int = 0
    # Short name of the VPC network the instance is reachable from.
    authorized_network: str = ""


class CertificateState(BaseModel):
    name: str
    exists: bool
    status: str = ""
    domains: list[str] = Field(default_factory=list)
    # Per-domain provisioning status (ACTIVE, PROVISIONING, FAILED_NOT_VISIBLE, ...).
    domain_status: dict[str, str] = Field(default_factory=dict)


class SecretState(BaseModel):
    name: str
    exists: bool
    latest_state: str = ""  # ENABLED | DISABLED | DESTROYED | "" when missing


class Diagnosis(BaseModel):
    """Read-only snapshot of every target, taken before anything changes."""

    connector: ConnectorState
    sql: SqlInstanceState
    run_services: list[RunServiceState]
    health_checks: list[HealthCheckState]
    backend_services: list[BackendServiceState]
    certificate: CertificateState
    secrets: list[SecretState]
    alert_policies: list[str] = Field(default_factory=list)
    # Topology (False in diagnoses recorded before it was read: kinds are then UNKNOWN
    # and every load-balancer step is treated as applicable, as it was then).
    topology_read: bool = False
    load_balancers: list[LoadBalancerState] = Field(default_factory=list)
    https_proxy: HttpsProxyState | None = None
    connector_network: str = ""  # short name of the connector's VPC network
    redis: RedisState | None = None
