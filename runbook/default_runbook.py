"""The default runbook of RUNBOOK.md (incident 1278), built from a request.

Pure function of the request, so the workflow can rebuild it on replay.
"""

from __future__ import annotations

from runbook import activity_names as act
from runbook.activity_io import (
    DiagnoseParams,
    BackendServiceTimeoutParams,
    CertificateParams,
    CheckRedisParams,
    CheckSecretsParams,
    DeleteOldRevisionsParams,
    DeployRevisionParams,
    ExpandSqlParams,
    HealthCheckParams,
    ProbeParams,
    RouteTrafficParams,
    SampleErrorRateParams,
    ScaleConnectorParams,
    VerifyInfrastructureParams,
    WebSocketProbeParams,
)
from runbook.definition import (
    CleanupSpec,
    GateSpec,
    PhaseSpec,
    RetrySpec,
    Runbook,
    SoakSpec,
    StepSpec,
)
from runbook.alert_policies import alert_policies
from runbook.request import RemediationRequest

# The workflow.patched() id of the steps added for fidelity to real Google Cloud (the auth
# service's VPC access, the Redis check and probe): histories recorded before them replay
# without them.
GCP_FIDELITY_PATCH = "gcp-fidelity-1"
# RUNBOOK.md's backend-service timeout where Google lets one be set (not serverless NEGs).
DEFAULT_BACKEND_SERVICE_TIMEOUT_S = 600

PHASE_TITLES = {
    1: "Infrastructure emergency response",
    2: "Application configuration",
    3: "Integration and monitoring",
    4: "Golden path validation",
}
PHASE_OWNERS = {1: "Infrastructure team", 2: "Development team", 3: "Platform team", 4: "QA team"}
ESCALATION_CHAINS = {
    1: ["Infrastructure Team Lead", "Platform Director"],
    2: ["Development Team Lead", "Engineering Manager"],
    3: ["Platform Team Lead", "CTO"],
    4: ["QA Team Lead", "Head of Quality"],
}
SUCCESS_CRITERIA = {
    1: [
        "VPC connector READY and under 70% utilisation",
        "Cloud SQL connection use under 75%, responses under 2 s",
        "one revision serving 100% of traffic",
        "every service on the target connector with the intended egress; Redis READY on its network",
    ],
    2: ["configuration validated", "new revision ready within its startup probe, no startup errors",
        "all required secrets exist with an enabled latest version"],
    3: ["alert policies exist", "managed certificate attached to the HTTPS proxy and ACTIVE for every domain"],
    4: ["health endpoints 200 within 5 s", "database and Redis health within 2 s",
        "WebSocket connects and authenticates", "zero 503 for the soak window, error rate < 1%"],
}

# Probes and reads are cheap and safe to retry quickly; a failing probe is a real signal
# after a few attempts, so it does not retry for long.
_PROBE_RETRY = RetrySpec(initial_interval_s=2, maximum_interval_s=10, maximum_attempts=3,
                         non_retryable_error_types=["InvalidArgument", "PermissionDenied", "NotFound"])


def _gate(req: RemediationRequest, gate_id: str, title: str) -> GateSpec:
    policy = req.approval.for_gate(gate_id)
    return GateSpec(
        id=gate_id, title=title, min_approvals=policy.min_approvals,
        approvers=list(policy.approvers), remind_after_s=policy.remind_after_s,
        escalate_after_s=policy.escalate_after_s, timeout_s=policy.timeout_s,
    )


def _phase(req: RemediationRequest, number: int, steps: list[StepSpec], **extra) -> PhaseSpec:
    budget = req.budgets.budget_s(number)
    return PhaseSpec(
        number=number, title=PHASE_TITLES[number], owner=PHASE_OWNERS[number],
        budget_s=budget, hard_limit_s=int(budget * req.budgets.hard_limit_factor),
        escalation=ESCALATION_CHAINS[number],
        gate=_gate(req, f"phase-{number}", f"Start phase {number}: {PHASE_TITLES[number]}"),
        steps=steps, success_criteria=SUCCESS_CRITERIA[number], **extra,
    )


def _phase_1(req: RemediationRequest) -> list[StepSpec]:
    t, d = req.targets, req.desired
    flags = {} if d.sql_max_connections is None else {"max_connections": str(d.sql_max_connections)}
    sql_summary = (f"max_connections {d.sql_max_connections}" if flags
                   else "max_connections left at the tier's default")
    steps = [
        StepSpec(
            id="scale-connector", activity=act.SCALE_CONNECTOR, reversible=False,
            parallel_group="infra",
            summary=(f"Scale connector {t.connector} to {d.connector_machine_type} "
                     f"min {d.connector_min_instances} max {d.connector_max_instances}"),
            params=ScaleConnectorParams(
                project=t.project, region=t.region, connector=t.connector,
                machine_type=d.connector_machine_type, min_instances=d.connector_min_instances,
                max_instances=d.connector_max_instances).model_dump(),
        ),
        StepSpec(
            id="expand-sql", activity=act.EXPAND_SQL, compensation=act.RESTORE_SQL,
            parallel_group="infra",
            summary=f"Expand Cloud SQL {t.sql_instance}: tier {d.sql_tier}, {sql_summary}",
            params=ExpandSqlParams(
                project=t.project, instance=t.sql_instance, tier=d.sql_tier,
                flags=flags).model_dump(),
            # Only one admin operation per instance: 409 operationInProgress is retried.
            retry=RetrySpec(initial_interval_s=5, maximum_interval_s=60, maximum_attempts=10),
        ),
        StepSpec(
            id="vpc-access-auth", activity=act.DEPLOY_REVISION, compensation=act.RESTORE_SERVICE,
            since_patch=GCP_FIDELITY_PATCH,
            summary=f"{t.auth_service}: VPC access through {t.connector}, egress {d.service_vpc_egress}",
            params=DeployRevisionParams(project=t.project, region=t.region, service=t.auth_service,
                                        vpc_connector=t.connector,
                                        vpc_egress=d.service_vpc_egress).model_dump(),
        ),
        StepSpec(
            id="deploy-incident-env", activity=act.DEPLOY_REVISION,
            compensation=act.RESTORE_SERVICE,
            summary=(f"Deploy incident env vars to {t.backend_service} "
                     f"({', '.join(sorted(d.incident_env))}), startup probe tolerating "
                     f"{d.startup_probe.probe().window_s()}s, VPC access through {t.connector} "
                     f"egress {d.service_vpc_egress}"),
            params=DeployRevisionParams(project=t.project, region=t.region,
                                        service=t.backend_service, env=d.incident_env,
                                        startup_probe=d.startup_probe.probe(),
                                        vpc_connector=t.connector,
                                        vpc_egress=d.service_vpc_egress).model_dump(),
        ),
        StepSpec(
            id="route-traffic", activity=act.ROUTE_TRAFFIC_TO_LATEST,
            compensation=act.RESTORE_SERVICE,
            summary=f"Route 100% of {t.backend_service} traffic to the latest ready revision",
            params=RouteTrafficParams(project=t.project, region=t.region,
                                      service=t.backend_service).model_dump(),
        ),
        StepSpec(
            id="verify-infrastructure", activity=act.VERIFY_INFRASTRUCTURE, kind="read",
            summary=("Verify phase 1: connector READY at size and under 70% utilised, "
                     "SQL under 75% of connections, one revision at 100%"),
            params=VerifyInfrastructureParams(project=t.project, region=t.region,
                                              connector=t.connector, sql_instance=t.sql_instance,
                                              service=t.backend_service,
                                              connector_machine_type=d.connector_machine_type,
                                              connector_min_instances=d.connector_min_instances,
                                              connector_max_instances=d.connector_max_instances,
                                              ).model_dump(),
            retry=_PROBE_RETRY,
        ),
    ]
    if t.redis_instance:
        steps.append(StepSpec(
            id="check-redis", activity=act.CHECK_REDIS, kind="read", since_patch=GCP_FIDELITY_PATCH,
            # Skippable: a cache the application can run degraded without.
            skippable=True,
            summary=(f"Check Memorystore {t.redis_instance} READY and reachable from "
                     f"{t.backend_service}, {t.auth_service} through {t.connector}"),
            params=CheckRedisParams(project=t.project, region=t.region, instance=t.redis_instance,
                                    connector=t.connector,
                                    services=[t.backend_service, t.auth_service]).model_dump(),
            retry=_PROBE_RETRY,
        ))
    return steps


def _phase_2(req: RemediationRequest) -> list[StepSpec]:
    t, d = req.targets, req.desired
    steps = [
        StepSpec(
            id="configure-backend", activity=act.DEPLOY_REVISION, compensation=act.RESTORE_SERVICE,
            summary=(f"Configure {t.backend_service}: pool env, {d.backend_cpu} CPU "
                     f"{d.backend_memory}, {d.backend_min_instances}-{d.backend_max_instances} "
                     f"instances, timeout {d.backend_timeout_s}s"),
            params=DeployRevisionParams(
                project=t.project, region=t.region, service=t.backend_service,
                env=d.backend_env, cpu=d.backend_cpu, memory=d.backend_memory,
                min_instances=d.backend_min_instances, max_instances=d.backend_max_instances,
                timeout_s=d.backend_timeout_s, startup_probe=d.startup_probe.probe()).model_dump(),
        ),
    ]
    for hc in t.health_checks:
        steps.append(StepSpec(
            id=f"health-check-{hc}", activity=act.CONFIGURE_HEALTH_CHECK,
            compensation=act.RESTORE_HEALTH_CHECK, parallel_group="load-balancer",
            summary=(f"Health check {hc}: interval {d.health_check_interval_s}s timeout "
                     f"{d.health_check_timeout_s}s thresholds {d.health_check_healthy_threshold}/"
                     f"{d.health_check_unhealthy_threshold}"),
            params=HealthCheckParams(
                project=t.project, health_check=hc, check_interval_s=d.health_check_interval_s,
                timeout_s=d.health_check_timeout_s,
                healthy_threshold=d.health_check_healthy_threshold,
                unhealthy_threshold=d.health_check_unhealthy_threshold).model_dump(),
        ))
    timeout_s = d.backend_service_timeout_s or DEFAULT_BACKEND_SERVICE_TIMEOUT_S
    for bs in t.backend_services:
        steps.append(StepSpec(
            id=f"backend-timeout-{bs}", activity=act.SET_BACKEND_SERVICE_TIMEOUT,
            compensation=act.RESTORE_BACKEND_SERVICE, parallel_group="load-balancer",
            summary=f"Backend service {bs}: timeout {timeout_s}s",
            params=BackendServiceTimeoutParams(
                project=t.project, backend_service=bs, timeout_s=timeout_s).model_dump(),
        ))
    steps.append(StepSpec(
        id="check-secrets", activity=act.CHECK_SECRETS, kind="read",
        summary=f"Check {len(t.required_secrets)} required secrets exist and are enabled",
        params=CheckSecretsParams(project=t.project, secrets=t.required_secrets).model_dump(),
        retry=_PROBE_RETRY,
    ))
    return steps


def alert_policy_names(req: RemediationRequest) -> list[str]:
    return [p.display_name for p in alert_policies(req)]


def diagnose_params(req: RemediationRequest) -> DiagnoseParams:
    """What the read-only diagnosis reads: every target the runbook may change."""
    t = req.targets
    return DiagnoseParams(
        project=t.project, region=t.region, connector=t.connector, sql_instance=t.sql_instance,
        run_services=[t.backend_service, t.auth_service], health_checks=list(t.health_checks),
        backend_services=t.backend_services, certificate=t.certificate,
        required_secrets=t.required_secrets, alert_policy_names=alert_policy_names(req),
        https_proxy=t.https_proxy, redis_instance=t.redis_instance)


def _phase_3(req: RemediationRequest) -> list[StepSpec]:
    t = req.targets
    steps = [
        StepSpec(
            id=f"alert-{i + 1}", activity=act.ENSURE_ALERT_POLICY,
            compensation=act.DELETE_ALERT_POLICY, parallel_group="alerts",
            # Skippable: monitoring of the fix, not the fix; add the policy by hand later.
            skippable=True,
            summary=f"Ensure alert policy '{p.display_name}'", params=p.model_dump(),
        )
        for i, p in enumerate(alert_policies(req))
    ]
    steps.append(StepSpec(
        id="ensure-certificate", activity=act.ENSURE_CERTIFICATE,
        compensation=act.DELETE_CERTIFICATE,
        summary=(f"Ensure managed certificate {t.certificate} for {', '.join(t.certificate_domains)}, "
                 f"attached to {t.https_proxy} beside its current certificates, and ACTIVE"),
        params=CertificateParams(project=t.project, certificate=t.certificate,
                                 domains=t.certificate_domains,
                                 wait_active_s=req.budgets.phase_3_s,
                                 target_https_proxy=t.https_proxy).model_dump(),
        start_to_close_s=req.budgets.phase_3_s + 300,
    ))
    return steps


def _phase_4(req: RemediationRequest) -> list[StepSpec]:
    url, s = req.targets.app_url, req.soak
    probes = [
        ("probe-health", "Backend /health answers 200 within 5 s", "/health", 5000),
        ("probe-auth-health", "Auth /auth/health answers 200 within 5 s", "/auth/health", 5000),
        ("probe-database-health", "Database health answers within 2 s", "/health/database", 2000),
    ]
    steps = [
        StepSpec(id=sid, activity=act.PROBE_HEALTH, kind="probe", parallel_group="probes",
                 summary=summary, retry=_PROBE_RETRY, start_to_close_s=60, heartbeat_s=act.READ_HEARTBEAT_S,
                 params=ProbeParams(base_url=url, path=path, max_latency_ms=ms).model_dump())
        for sid, summary, path, ms in probes
    ]
    if req.targets.redis_instance:
        steps.append(StepSpec(
            id="probe-redis-health", activity=act.PROBE_HEALTH, kind="probe",
            parallel_group="probes", since_patch=GCP_FIDELITY_PATCH, skippable=True,
            summary="Redis health answers within 2 s", retry=_PROBE_RETRY, start_to_close_s=60,
            heartbeat_s=act.READ_HEARTBEAT_S,
            params=ProbeParams(base_url=url, path="/health/redis", max_latency_ms=2000).model_dump()))
    steps.append(StepSpec(
        id="probe-websocket", activity=act.PROBE_WEBSOCKET, kind="probe", parallel_group="probes",
        # Skippable: WebSocket clients reconnect; the HTTP probes and the soak still decide.
        skippable=True,
        summary="WebSocket connects and authenticates", retry=_PROBE_RETRY,
        start_to_close_s=60, heartbeat_s=act.READ_HEARTBEAT_S,
        params=WebSocketProbeParams(base_url=url).model_dump(),
    ))
    steps.append(StepSpec(
        id="soak", activity=act.SAMPLE_ERROR_RATE, kind="soak", retry=_PROBE_RETRY,
        start_to_close_s=120, heartbeat_s=act.READ_HEARTBEAT_S,
        summary=f"Soak: zero 503 for {s.window_s // 60} min continuous, error rate < {s.max_error_rate:.0%}",
        params=SampleErrorRateParams(base_url=url, requests=s.requests_per_sample).model_dump(),
    ))
    return steps


def build_runbook(req: RemediationRequest) -> Runbook:
    t = req.targets
    s = req.soak
    cleanup = CleanupSpec(
        gate=_gate(req, "cleanup-revisions", f"Delete old revisions of {t.backend_service} (irreversible)"),
        escalation=ESCALATION_CHAINS[1],
        step=StepSpec(
            id="delete-old-revisions", activity=act.DELETE_OLD_REVISIONS, reversible=False,
            summary=f"Delete old revisions of {t.backend_service} (irreversible)",
            params=DeleteOldRevisionsParams(project=t.project, region=t.region,
                                            service=t.backend_service).model_dump(),
            # Bounded: three attempts of 10 minutes. A delete operation that never
            # finishes ends the cleanup as failed (the remediation stays), not hours later.
            start_to_close_s=600, retry=RetrySpec(maximum_attempts=3),
        ),
    )
    return Runbook(
        name=f"incident-{req.incident_id}",
        phases=[
            _phase(req, 1, _phase_1(req)),
            _phase(req, 2, _phase_2(req)),
            _phase(req, 3, _phase_3(req)),
            _phase(req, 4, _phase_4(req),
                   soak=SoakSpec(window_s=s.window_s, sample_every_s=s.sample_every_s,
                                 max_error_rate=s.max_error_rate)),
        ],
        cleanup=cleanup,
    )
