"""The plan shown at the first gate: every change as current -> desired, and preflight.

Built by a pure function from the read-only diagnosis, so it is deterministic, replays,
and can be checked by the CLI's ``plan`` command without starting a run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field

from runbook import activity_names as act
from runbook.activity_io import DEFAULT_STARTUP_PROBE, Diagnosis, RunServiceState, StartupProbe
from runbook.alert_policies import DB_CONNECTION_TIME_NOTE
from runbook.applicability import NotApplicable, not_applicable, serverless_backends
from runbook.cloud_sql_limits import default_max_connections, postgres_tier_problem
from runbook.definition import Runbook, StepSpec
from runbook.request import STARTUP_WINDOW_MAX_S, FieldProblem, RemediationRequest


class PlannedChange(BaseModel):
    step_id: str
    resource: str
    field: str
    current: Any
    desired: Any
    reversible: bool


class DriftRow(BaseModel):
    """A target that changed between the plan and a later gate (runbook/drift.py)."""

    step_id: str
    resource: str
    field: str
    planned_from: Any
    now: Any
    # remaining: a target of a phase still to run; reverted: a finished phase's change
    # is no longer in force.
    kind: str = "remaining"


# A value Google would refuse, found against the current state: same shape as a request
# field problem, so one description serves both.
PreflightProblem = FieldProblem


class Plan(BaseModel):
    changes: list[PlannedChange]
    problems: list[PreflightProblem] = Field(default_factory=list)
    # Facts worth knowing at the gate that do not block the run (phase checks enforce them).
    warnings: list[str] = Field(default_factory=list)
    # Steps Google Cloud would refuse or ignore on this topology: shown, not attempted.
    not_applicable: list[NotApplicable] = Field(default_factory=list)
    # Set when the plan was rebuilt at a later gate: what drifted, and the digest it replaced.
    drift: list[DriftRow] = Field(default_factory=list)
    rebuilt_from: str | None = None
    digest: str = ""

    def compute_digest(self) -> str:
        content = {"changes": [c.model_dump(mode="json") for c in self.changes],
                   "problems": [p.model_dump(mode="json") for p in self.problems]}
        if self.not_applicable:  # absent from plans made before it existed: same digest
            content["not_applicable"] = [n.model_dump(mode="json") for n in self.not_applicable]
        if self.rebuilt_from:  # absent from first plans: same digest as before
            content["drift"] = [d.model_dump(mode="json") for d in self.drift]
            content["rebuilt_from"] = self.rebuilt_from
        body = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def _service(diag: Diagnosis, name: str) -> RunServiceState | None:
    return next((s for s in diag.run_services if s.name == name), None)


def probe_view(probe: StartupProbe | dict | None) -> dict[str, Any]:
    """A startup probe as the plan shows it: what it checks and how long it lets a start take."""
    if probe is None:
        probe, label = DEFAULT_STARTUP_PROBE, "Cloud Run default (TCP)"
    else:
        probe = StartupProbe.model_validate(probe)
        label = f"HTTP GET {probe.path}" if probe.path else "TCP"
    return {"check": label, "window_s": probe.window_s(), "period_s": probe.period_s,
            "failure_threshold": probe.failure_threshold,
            "initial_delay_s": probe.initial_delay_s, "timeout_s": probe.timeout_s}


def _changes_for(step: StepSpec, diag: Diagnosis) -> list[PlannedChange]:
    p = step.params
    out: list[PlannedChange] = []

    def add(resource: str, field: str, current: Any, desired: Any) -> None:
        if current != desired:
            out.append(PlannedChange(step_id=step.id, resource=resource, field=field,
                                     current=current, desired=desired, reversible=step.reversible))

    if step.activity == act.SCALE_CONNECTOR:
        c = diag.connector
        add(c.name, "machineType", c.machine_type, p["machine_type"])
        add(c.name, "minInstances", c.min_instances, p["min_instances"])
        add(c.name, "maxInstances", c.max_instances, p["max_instances"])
    elif step.activity == act.EXPAND_SQL:
        add(diag.sql.name, "settings.tier", diag.sql.tier, p["tier"])
        for flag, value in sorted(p["flags"].items()):
            add(diag.sql.name, f"databaseFlags.{flag}", diag.sql.flags.get(flag), value)
    elif step.activity == act.DEPLOY_REVISION:
        svc = _service(diag, p["service"])
        if svc is not None:
            for k, v in sorted(p["env"].items()):
                add(svc.name, f"env.{k}", svc.env.get(k), v)
            for field, current in (("cpu", svc.cpu), ("memory", svc.memory),
                                   ("min_instances", svc.min_instances),
                                   ("max_instances", svc.max_instances),
                                   ("timeout_s", svc.timeout_s)):
                if p.get(field) is not None:
                    add(svc.name, field, current, p[field])
            if p.get("startup_probe") is not None:
                add(svc.name, "startupProbe", probe_view(svc.startup_probe),
                    probe_view(p["startup_probe"]))
            if p.get("vpc_connector") is not None and diag.topology_read:
                add(svc.name, "vpcAccess.connector", svc.vpc_connector or None, p["vpc_connector"])
            if p.get("vpc_egress") is not None and diag.topology_read:
                add(svc.name, "vpcAccess.egress", svc.vpc_egress or None, p["vpc_egress"])
    elif step.activity == act.ROUTE_TRAFFIC_TO_LATEST:
        svc = _service(diag, p["service"])
        if svc is not None:
            current = {t.revision: t.percent for t in svc.traffic}
            add(svc.name, "traffic", current, {"LATEST": 100})
    elif step.activity == act.CONFIGURE_HEALTH_CHECK:
        hc = next((h for h in diag.health_checks if h.name == p["health_check"]), None)
        if hc is not None:
            add(hc.name, "checkIntervalSec", hc.check_interval_s, p["check_interval_s"])
            add(hc.name, "timeoutSec", hc.timeout_s, p["timeout_s"])
            add(hc.name, "healthyThreshold", hc.healthy_threshold, p["healthy_threshold"])
            add(hc.name, "unhealthyThreshold", hc.unhealthy_threshold, p["unhealthy_threshold"])
    elif step.activity == act.SET_BACKEND_SERVICE_TIMEOUT:
        bs = next((b for b in diag.backend_services if b.name == p["backend_service"]), None)
        if bs is not None:
            add(bs.name, "timeoutSec", bs.timeout_s, p["timeout_s"])
    elif step.activity == act.ENSURE_ALERT_POLICY:
        if p["display_name"] not in diag.alert_policies:
            add(p["display_name"], "alertPolicy", None, "created")
    elif step.activity == act.ENSURE_CERTIFICATE:
        cert = diag.certificate
        if not cert.exists:
            add(cert.name, "sslCertificate", None, {"domains": p["domains"]})
        proxy = diag.https_proxy
        if p.get("target_https_proxy") and proxy is not None and proxy.exists:
            # Attached beside the certificates already served, so no client loses its cert.
            attached = proxy.certificates if cert.name in proxy.certificates \
                else [*proxy.certificates, cert.name]
            add(proxy.name, "sslCertificates", proxy.certificates, attached)
    elif step.activity == act.DELETE_OLD_REVISIONS:
        svc = _service(diag, p["service"])
        if svc is not None:
            # A prediction, unlike RunServiceState.old_revisions() (today's state): phase 1
            # routes everything to a new revision, so every revision existing now is old
            # by the time cleanup runs.
            if [r for r in svc.revisions if r != svc.latest_ready_revision]:
                add(svc.name, "revisions", sorted(svc.revisions), "only the serving revision")
    return out


def _preflight(req: RemediationRequest, diag: Diagnosis) -> tuple[list[PreflightProblem], list[str]]:
    d = req.desired
    problems: list[PreflightProblem] = []
    warnings: list[str] = []
    c = diag.connector
    # Connectors do not scale in: each new count must be >= the current one.
    if d.connector_min_instances < c.min_instances:
        problems.append(PreflightProblem(
            field="desired.connector_min_instances",
            reason=f"connectors do not scale down: current minInstances is {c.min_instances}, "
                   f"desired {d.connector_min_instances}"))
    if d.connector_max_instances < c.max_instances:
        problems.append(PreflightProblem(
            field="desired.connector_max_instances",
            reason=f"connectors do not scale down: current maxInstances is {c.max_instances}, "
                   f"desired {d.connector_max_instances}"))
    if c.state not in ("READY", "UPDATING"):
        problems.append(PreflightProblem(field="targets.connector",
                                         reason=f"connector {c.name} is {c.state}, not READY"))
    sql = diag.sql
    # Custom tiers are checked by the documented rule (request validation), not against
    # tiers.list, whose contents per project are unverified (GCP_FIDELITY A9).
    if sql.database_version.startswith("POSTGRES"):
        tier_problem = postgres_tier_problem(d.sql_tier, sql.edition)
        if tier_problem:
            problems.append(PreflightProblem(field="desired.sql_tier", reason=tier_problem))
    lo, hi = sql.max_connections_min, sql.max_connections_max
    wanted = d.sql_max_connections
    if wanted is not None and (lo is not None and wanted < lo or hi is not None and wanted > hi):
        problems.append(PreflightProblem(
            field="desired.sql_max_connections",
            reason=f"max_connections must be within {lo}..{hi} for {sql.database_version}"))
    warnings.extend(_max_connections_warnings(req, diag))
    if sql.state in ("FAILED", "SUSPENDED", "PENDING_DELETE"):
        problems.append(PreflightProblem(field="targets.sql_instance",
                                         reason=f"instance {sql.name} is {sql.state}"))
    if sql.state == "MAINTENANCE":
        warnings.append(f"Cloud SQL {sql.name} is in MAINTENANCE; its patch will wait and retry")
    # Diagnoses recorded before the topology was read did not read the auth service.
    checked = ("backend_service", "auth_service") if diag.topology_read else ("backend_service",)
    for field in checked:
        svc_name = getattr(req.targets, field)
        if _service(diag, svc_name) is None:
            problems.append(PreflightProblem(field=f"targets.{field}",
                                             reason=f"Cloud Run service {svc_name} not found"))
    # The diagnosis leaves out what it did not find: a health check named in the request
    # but absent would fail its phase after phase 1's irreversible connector change.
    found_checks = {h.name for h in diag.health_checks}
    missing_checks = [h for h in req.targets.health_checks if h not in found_checks]
    if missing_checks:
        problems.append(PreflightProblem(
            field="targets.health_checks",
            reason=f"health check(s) not found in project {req.targets.project}: "
                   f"{', '.join(missing_checks)}"))
    cert = diag.certificate
    if cert.exists and sorted(cert.domains) != sorted(req.targets.certificate_domains):
        problems.append(PreflightProblem(
            field="targets.certificate_domains",
            reason=f"certificate {cert.name} exists for {cert.domains}; a managed certificate's "
                   "domains cannot be changed in place"))
    problems.extend(_load_balancer_problems(req, diag))
    warnings.extend(_topology_warnings(req, diag))
    warnings.append(DB_CONNECTION_TIME_NOTE)
    warnings.append(
        f"the seeds report 600-900 s backend starts during the outage; no Cloud Run startup "
        f"probe tolerates more than {STARTUP_WINDOW_MAX_S} s (initialDelaySeconds <= 240 plus "
        f"failureThreshold x periodSeconds <= 240). The runbook deploys a probe of "
        f"{req.desired.startup_probe.probe().window_s()} s after phase 1 has scaled the "
        "connector and Cloud SQL, which shortens a start that waits on them; a start still "
        "longer fails the new revision (traffic stays on the old one) and the application "
        "must start faster (lazy initialisation, startup CPU boost)")
    bad = [s.name for s in diag.secrets if not s.exists or s.latest_state != "ENABLED"]
    if bad:
        warnings.append("secrets missing or without an enabled latest version (phase 2 will "
                        f"fail until fixed): {', '.join(bad)}")
    return problems, warnings


def _max_connections_warnings(req: RemediationRequest, diag: Diagnosis) -> list[str]:
    """GCP_FIDELITY A8: max_connections below the new tier's default lowers the limit."""
    d, sql = req.desired, diag.sql
    default = default_max_connections(d.sql_tier)
    if default is None:
        return []
    if d.sql_max_connections is not None and d.sql_max_connections < default:
        return [f"desired.sql_max_connections {d.sql_max_connections} is LOWER than the default "
                f"of tier {d.sql_tier} ({default}): setting it lowers the connection limit; "
                "leave it unset to keep the tier's default"]
    current = sql.flags.get("max_connections")
    if d.sql_max_connections is None and current and current.isdigit() and int(current) < default:
        return [f"{sql.name} has max_connections={current} set, below the default of tier "
                f"{d.sql_tier} ({default}); the flag stays unless desired.sql_max_connections "
                "is set"]
    return []


def _load_balancer_problems(req: RemediationRequest, diag: Diagnosis) -> list[PreflightProblem]:
    if not diag.topology_read:
        return []
    problems = []
    serverless = serverless_backends(diag)
    asked = req.desired.backend_service_timeout_s
    targeted = [b for b in req.targets.backend_services if b in serverless]
    if asked is not None and targeted:
        problems.append(PreflightProblem(
            field="desired.backend_service_timeout_s",
            reason=(f"{', '.join(targeted)} {'is' if len(targeted) == 1 else 'are'} served by "
                    "serverless NEGs: Google refuses timeoutSec there with 400 'Timeout sec is "
                    "not supported for a backend service with Serverless network endpoint "
                    "groups' (the timeout is fixed at 60 minutes); remove the field, or set "
                    "desired.backend_timeout_s (Cloud Run's request timeout) instead")))
    found = {b.name for b in diag.backend_services}
    missing = [b for b in req.targets.backend_services if b not in found]
    if missing:
        problems.append(PreflightProblem(
            field="targets.backend_services",
            reason=f"backend service(s) not found: {', '.join(missing)}"))
    proxy = diag.https_proxy
    if proxy is not None and not proxy.exists:
        problems.append(PreflightProblem(
            field="targets.https_proxy",
            reason=f"target HTTPS proxy {proxy.name} not found: the managed certificate can only "
                   "provision once a load balancer's HTTPS proxy serves it"))
    redis = diag.redis
    if redis is not None and not redis.exists:
        problems.append(PreflightProblem(field="targets.redis_instance",
                                         reason=f"Memorystore instance {redis.name} not found"))
    return problems


def _topology_warnings(req: RemediationRequest, diag: Diagnosis) -> list[str]:
    if not diag.topology_read:
        return []
    out = []
    serverless = serverless_backends(diag)
    if serverless:
        out.append(f"{', '.join(serverless)}: serverless NEG backends. Load-balancer health checks "
                   "and backend timeouts do not apply (shown as not applicable); the Cloud Run "
                   "startup probe governs readiness of new revisions")
    redis = diag.redis
    if redis is not None and redis.exists and diag.connector_network and             redis.authorized_network and redis.authorized_network != diag.connector_network:
        out.append(f"Memorystore {redis.name} is on network {redis.authorized_network} but "
                   f"connector {diag.connector.name} is on {diag.connector_network}: the "
                   "services cannot reach it (check-redis will fail)")
    return out


def build_plan(req: RemediationRequest, book: Runbook, diag: Diagnosis) -> Plan:
    changes: list[PlannedChange] = []
    skipped: list[NotApplicable] = []
    for phase in book.phases:
        for step in phase.steps:
            if step.kind != "mutate":
                continue
            na = not_applicable(step, diag)
            if na is not None:
                skipped.append(na)
                continue
            changes.extend(_changes_for(step, diag))
    changes.extend(_changes_for(book.cleanup.step, diag))
    problems, warnings = _preflight(req, diag)
    plan = Plan(changes=changes, problems=problems, warnings=warnings, not_applicable=skipped)
    plan.digest = plan.compute_digest()
    return plan
