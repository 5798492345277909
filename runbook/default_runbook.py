"""The default runbook of RUNBOOK.md (incident 1278), built from a request.

Pure function of the request, so the workflow can rebuild it on replay.
"""

from __future__ import annotations

from runbook import activity_names as act
from runbook.activity_io import (
    AlertPolicyParams,
    DiagnoseParams,
    BackendServiceTimeoutParams,
    CertificateParams,
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
from runbook.request import RemediationRequest

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
    ],
    2: ["configuration validated", "new revision ready, no startup errors",
        "all required secrets exist with an enabled latest version"],
    3: ["alert policies exist", "managed certificate ACTIVE for every domain"],
    4: ["health endpoints 200 within 5 s", "database health within 2 s",
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
    return [
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
            summary=(f"Expand Cloud SQL {t.sql_instance}: tier {d.sql_tier}, "
                     f"max_connections {d.sql_max_connections}"),
            params=ExpandSqlParams(
                project=t.project, instance=t.sql_instance, tier=d.sql_tier,
                flags={"max_connections": str(d.sql_max_connections)}).model_dump(),
            # Only one admin operation per instance: 409 operationInProgress is retried.
            retry=RetrySpec(initial_interval_s=5, maximum_interval_s=60, maximum_attempts=10),
        ),
        StepSpec(
            id="deploy-incident-env", activity=act.DEPLOY_REVISION,
            compensation=act.RESTORE_SERVICE,
            summary=f"Deploy incident env vars to {t.backend_service} "
                    f"({', '.join(sorted(d.incident_env))})",
            params=DeployRevisionParams(project=t.project, region=t.region,
                                        service=t.backend_service, env=d.incident_env).model_dump(),
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
                timeout_s=d.backend_timeout_s).model_dump(),
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
    for bs in t.backend_services:
        steps.append(StepSpec(
            id=f"backend-timeout-{bs}", activity=act.SET_BACKEND_SERVICE_TIMEOUT,
            compensation=act.RESTORE_BACKEND_SERVICE, parallel_group="load-balancer",
            summary=f"Backend service {bs}: timeout {d.backend_service_timeout_s}s",
            params=BackendServiceTimeoutParams(
                project=t.project, backend_service=bs,
                timeout_s=d.backend_service_timeout_s).model_dump(),
        ))
    steps.append(StepSpec(
        id="check-secrets", activity=act.CHECK_SECRETS, kind="read",
        summary=f"Check {len(t.required_secrets)} required secrets exist and are enabled",
        params=CheckSecretsParams(project=t.project, secrets=t.required_secrets).model_dump(),
        retry=_PROBE_RETRY,
    ))
    return steps


def _alert_policies(req: RemediationRequest) -> list[AlertPolicyParams]:
    t = req.targets
    run_requests = ('metric.type="run.googleapis.com/request_count" AND '
                    f'resource.type="cloud_run_revision" AND resource.label.service_name="{t.backend_service}"')
    connector_util = ('metric.type="vpcaccess.googleapis.com/connector/cpu/utilizations" AND '
                      f'resource.type="vpc_access_connector" AND resource.label.connector_name="{t.connector}"')
    # Emitted by the application (database_timeout_config); a custom metric by design.
    db_connect = ('metric.type="custom.googleapis.com/database/connection_time_seconds" AND '
                  f'resource.type="cloud_run_revision" AND resource.label.service_name="{t.backend_service}"')
    p = t.project
    return [
        AlertPolicyParams(project=p, display_name=f"[{req.incident_id}] {t.backend_service} HTTP 5xx ratio > 10%",
                          metric_filter=run_requests + ' AND metric.label.response_code_class="5xx"',
                          denominator_filter=run_requests, threshold=0.10, severity="ERROR"),
        AlertPolicyParams(project=p, display_name=f"[{req.incident_id}] {t.connector} utilisation > 80%",
                          metric_filter=connector_util, threshold=0.80, severity="WARNING"),
        AlertPolicyParams(project=p, display_name=f"[{req.incident_id}] {t.connector} utilisation > 90%",
                          metric_filter=connector_util, threshold=0.90, severity="CRITICAL"),
        AlertPolicyParams(project=p, display_name=f"[{req.incident_id}] DB connection time > 60s",
                          metric_filter=db_connect, threshold=60, severity="WARNING"),
        AlertPolicyParams(project=p, display_name=f"[{req.incident_id}] DB connection time > 90s",
                          metric_filter=db_connect, threshold=90, severity="CRITICAL"),
    ]


def alert_policy_names(req: RemediationRequest) -> list[str]:
    return [p.display_name for p in _alert_policies(req)]


def diagnose_params(req: RemediationRequest) -> DiagnoseParams:
    """What the read-only diagnosis reads: every target the runbook may change."""
    t = req.targets
    return DiagnoseParams(
        project=t.project, region=t.region, connector=t.connector, sql_instance=t.sql_instance,
        run_services=[t.backend_service, t.auth_service], health_checks=list(t.health_checks),
        backend_services=t.backend_services, certificate=t.certificate,
        required_secrets=t.required_secrets, alert_policy_names=alert_policy_names(req))


def _phase_3(req: RemediationRequest) -> list[StepSpec]:
    t = req.targets
    steps = [
        StepSpec(
            id=f"alert-{i + 1}", activity=act.ENSURE_ALERT_POLICY,
            compensation=act.DELETE_ALERT_POLICY, parallel_group="alerts",
            summary=f"Ensure alert policy '{p.display_name}'", params=p.model_dump(),
        )
        for i, p in enumerate(_alert_policies(req))
    ]
    steps.append(StepSpec(
        id="ensure-certificate", activity=act.ENSURE_CERTIFICATE,
        compensation=act.DELETE_CERTIFICATE,
        summary=f"Ensure managed certificate {t.certificate} ACTIVE for {', '.join(t.certificate_domains)}",
        params=CertificateParams(project=t.project, certificate=t.certificate,
                                 domains=t.certificate_domains,
                                 wait_active_s=req.budgets.phase_3_s).model_dump(),
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
                 summary=summary, retry=_PROBE_RETRY, start_to_close_s=60, heartbeat_s=None,
                 params=ProbeParams(base_url=url, path=path, max_latency_ms=ms).model_dump())
        for sid, summary, path, ms in probes
    ]
    steps.append(StepSpec(
        id="probe-websocket", activity=act.PROBE_WEBSOCKET, kind="probe", parallel_group="probes",
        summary="WebSocket connects and authenticates", retry=_PROBE_RETRY,
        start_to_close_s=60, heartbeat_s=None,
        params=WebSocketProbeParams(base_url=url).model_dump(),
    ))
    steps.append(StepSpec(
        id="soak", activity=act.SAMPLE_ERROR_RATE, kind="soak", retry=_PROBE_RETRY,
        start_to_close_s=120, heartbeat_s=None,
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
