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
from runbook.activity_io import Diagnosis, RunServiceState
from runbook.definition import Runbook, StepSpec
from runbook.request import FieldProblem, RemediationRequest


class PlannedChange(BaseModel):
    step_id: str
    resource: str
    field: str
    current: Any
    desired: Any
    reversible: bool


# A value Google would refuse, found against the current state: same shape as a request
# field problem, so one description serves both.
PreflightProblem = FieldProblem


class Plan(BaseModel):
    changes: list[PlannedChange]
    problems: list[PreflightProblem] = Field(default_factory=list)
    # Facts worth knowing at the gate that do not block the run (phase checks enforce them).
    warnings: list[str] = Field(default_factory=list)
    digest: str = ""

    def compute_digest(self) -> str:
        body = json.dumps(
            {"changes": [c.model_dump(mode="json") for c in self.changes],
             "problems": [p.model_dump(mode="json") for p in self.problems]},
            sort_keys=True, separators=(",", ":"), default=str,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def _service(diag: Diagnosis, name: str) -> RunServiceState | None:
    return next((s for s in diag.run_services if s.name == name), None)


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
    if sql.available_tiers and d.sql_tier not in sql.available_tiers:
        problems.append(PreflightProblem(
            field="desired.sql_tier",
            reason=f"{d.sql_tier} is not offered for project {req.targets.project}"))
    lo, hi = sql.max_connections_min, sql.max_connections_max
    if lo is not None and d.sql_max_connections < lo or hi is not None and d.sql_max_connections > hi:
        problems.append(PreflightProblem(
            field="desired.sql_max_connections",
            reason=f"max_connections must be within {lo}..{hi} for {sql.database_version}"))
    if sql.state in ("FAILED", "SUSPENDED", "PENDING_DELETE"):
        problems.append(PreflightProblem(field="targets.sql_instance",
                                         reason=f"instance {sql.name} is {sql.state}"))
    if sql.state == "MAINTENANCE":
        warnings.append(f"Cloud SQL {sql.name} is in MAINTENANCE; its patch will wait and retry")
    for svc_name in (req.targets.backend_service,):
        if _service(diag, svc_name) is None:
            problems.append(PreflightProblem(field="targets.backend_service",
                                             reason=f"Cloud Run service {svc_name} not found"))
    cert = diag.certificate
    if cert.exists and sorted(cert.domains) != sorted(req.targets.certificate_domains):
        problems.append(PreflightProblem(
            field="targets.certificate_domains",
            reason=f"certificate {cert.name} exists for {cert.domains}; a managed certificate's "
                   "domains cannot be changed in place"))
    bad = [s.name for s in diag.secrets if not s.exists or s.latest_state != "ENABLED"]
    if bad:
        warnings.append("secrets missing or without an enabled latest version (phase 2 will "
                        f"fail until fixed): {', '.join(bad)}")
    return problems, warnings


def build_plan(req: RemediationRequest, book: Runbook, diag: Diagnosis) -> Plan:
    changes: list[PlannedChange] = []
    for phase in book.phases:
        for step in phase.steps:
            if step.kind == "mutate":
                changes.extend(_changes_for(step, diag))
    changes.extend(_changes_for(book.cleanup.step, diag))
    problems, warnings = _preflight(req, diag)
    plan = Plan(changes=changes, problems=problems, warnings=warnings)
    plan.digest = plan.compute_digest()
    return plan
