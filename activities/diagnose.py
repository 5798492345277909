"""Read-only diagnosis of every target, and the phase-1 verification.

Both change nothing, so they have no checkpoint; any failure goes through the error map.
The verification also reads RUNBOOK phase 1's success criteria (connector utilisation, DB
connection use) from Cloud Monitoring time series.
Reads run concurrently in threads (each discovery call builds its own client).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

from googleapiclient.errors import HttpError
from google.api_core import exceptions as gexc
from temporalio import activity

from activities.redaction import redact_env
from activities import errors
from activities.clients import GcpClients, execute, list_all
from activities.cloud_run import (
    LATEST,
    config_view,
    list_revisions,
    read_service,
    rollout,
    service_name,
    short,
)
from activities.compute import BACKEND_TIMEOUT_DEFAULT, cert_record, hc_record
from activities.monitoring import list_alert_policies
from activities.mutation import guarded, read_outcome
from activities.secret_manager import read_secret_states
from activities.vpc_access import connector_name, read_connector
from runbook import activity_names
from runbook.activity_io import (
    BackendServiceState,
    CertificateState,
    ConnectorState,
    Diagnosis,
    DiagnoseParams,
    HealthCheckState,
    RunServiceState,
    SqlInstanceState,
    StepOutcome,
    TrafficSplit,
    VerifyInfrastructureParams,
)


def _or_none_on_404(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except HttpError as err:
        if err.status_code == 404:
            return None
        raise
    except gexc.NotFound:
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# Cloud Monitoring metrics for RUNBOOK phase 1's success criteria.
CONNECTOR_UTILISATION = "vpcaccess.googleapis.com/connector/cpu/utilizations"
SQL_BACKENDS = "cloudsql.googleapis.com/database/postgresql/num_backends"
METRIC_WINDOW = timedelta(minutes=5)
NO_DATA = "no data yet"
NO_MAX_CONNECTIONS = "not judged: no max_connections flag"


def _rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _point_value(point: dict[str, Any]) -> float | None:
    value = point.get("value") or {}
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "int64Value" in value:
        return float(int(value["int64Value"]))
    dist = value.get("distributionValue")
    if dist is not None and _int(dist.get("count")):
        # The real cpu/utilizations is a distribution over the connector's instances: its
        # mean is the average instance's CPU use.
        return float(dist.get("mean", 0.0))
    return None


def latest_points(clients: GcpClients, project: str, flt: str) -> list[tuple[str, float]]:
    """(endTime, value) of the newest point of every series matching ``flt`` in the last
    ``METRIC_WINDOW``; series without a readable point are left out."""
    api = clients.discovery("monitoring").projects().timeSeries()
    end = datetime.now(timezone.utc)
    out: list[tuple[str, float]] = []
    for series in list_all(api, api.list(name=f"projects/{project}", filter=flt,
                                         interval_startTime=_rfc3339(end - METRIC_WINDOW),
                                         interval_endTime=_rfc3339(end), view="FULL"),
                           "timeSeries"):
        # Points come newest first.
        for point in series.get("points", [])[:1]:
            value = _point_value(point)
            if value is not None:
                out.append((point.get("interval", {}).get("endTime", ""), value))
    return out


class DiagnoseActivities:
    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients

    # -- reads (run in threads) -----------------------------------------------------------

    def _connector(self, project: str, region: str, connector: str) -> ConnectorState:
        c = read_connector(self.clients, connector_name(project, region, connector))
        return ConnectorState(name=c["name"], state=c["state"], machine_type=c["machineType"],
                              min_instances=c["minInstances"], max_instances=c["maxInstances"])

    def _sql(self, project: str, instance: str) -> SqlInstanceState:
        api = self.clients.discovery("sqladmin")
        inst = execute(api.instances().get(project=project, instance=instance))
        version = inst.get("databaseVersion", "")
        # What the API accepts for this project/version, so preflight can refuse a tier or
        # a max_connections value before anything changes.
        tiers = execute(api.tiers().list(project=project)).get("items", [])
        flags = execute(api.flags().list(databaseVersion=version)).get("items", []) \
            if version else []
        max_conn = next((f for f in flags if f.get("name") == "max_connections"), {})
        settings = inst.get("settings", {})
        return SqlInstanceState(
            name=inst.get("name", instance), state=inst.get("state", ""),
            database_version=version, tier=settings.get("tier", ""),
            flags={f["name"]: str(f.get("value", "")) for f in settings.get("databaseFlags", [])},
            available_tiers=sorted(t["tier"] for t in tiers if t.get("tier")),
            max_connections_min=_int(max_conn.get("minValue")),
            max_connections_max=_int(max_conn.get("maxValue")),
        )

    def _service(self, project: str, region: str, service: str) -> RunServiceState | None:
        name = service_name(project, region, service)
        svc = _or_none_on_404(read_service, self.clients, name)
        if svc is None:
            return None
        revisions = list_revisions(self.clients, name)
        view = config_view(svc.get("template", {}))
        return RunServiceState(
            name=service, ready=rollout(svc) == "ready",
            latest_ready_revision=short(svc.get("latestReadyRevision", "")),
            latest_created_revision=short(svc.get("latestCreatedRevision", "")),
            revisions=[short(r["name"]) for r in revisions],
            traffic=[TrafficSplit(revision="LATEST" if t.get("type", LATEST) == LATEST
                                  else short(t.get("revision", "")),
                                  percent=int(t.get("percent", 0)))
                     for t in svc.get("traffic", [])],
            env=redact_env(view["env"]), cpu=view["cpu"], memory=view["memory"],
            min_instances=view["min_instances"], max_instances=view["max_instances"],
            timeout_s=view["timeout_s"],
        )

    def _health_check(self, project: str, name: str) -> HealthCheckState | None:
        api = self.clients.discovery("compute")
        hc = _or_none_on_404(lambda: execute(api.healthChecks().get(project=project,
                                                                   healthCheck=name)))
        if hc is None:
            return None
        rec = hc_record(hc)
        block = next((v for k, v in hc.items() if k.endswith("HealthCheck")
                      and isinstance(v, dict)), {})
        return HealthCheckState(name=name, check_interval_s=rec["checkIntervalSec"],
                                timeout_s=rec["timeoutSec"],
                                healthy_threshold=rec["healthyThreshold"],
                                unhealthy_threshold=rec["unhealthyThreshold"],
                                request_path=block.get("requestPath", ""))

    def _backend_service(self, project: str, name: str) -> BackendServiceState | None:
        api = self.clients.discovery("compute")
        bs = _or_none_on_404(lambda: execute(api.backendServices().get(project=project,
                                                                      backendService=name)))
        if bs is None:
            return None
        return BackendServiceState(name=name,
                                   timeout_s=int(bs.get("timeoutSec", BACKEND_TIMEOUT_DEFAULT)))

    def _certificate(self, project: str, name: str) -> CertificateState:
        api = self.clients.discovery("compute")
        cert = _or_none_on_404(lambda: execute(api.sslCertificates().get(
            project=project, sslCertificate=name)))
        rec = cert_record(cert)
        return CertificateState(name=name, exists=rec["exists"], status=rec.get("status", ""),
                                domains=rec.get("domains", []))

    def _alert_policies(self, project: str, wanted: list[str]) -> list[str]:
        names = [p.get("displayName", "") for p in list_alert_policies(self.clients, project)]
        return sorted(n for n in names if not wanted or n in wanted)

    # -- activities -------------------------------------------------------------------

    @activity.defn(name=activity_names.DIAGNOSE)
    async def diagnose(self, p: DiagnoseParams) -> Diagnosis:
        def read(what: str, fn: Any, *args: Any) -> Any:
            return guarded("diagnose", what, asyncio.to_thread(fn, *args))

        connector, sql, services, hcs, bss, cert, secrets, policies = await asyncio.gather(
            read(connector_name(p.project, p.region, p.connector), self._connector,
                 p.project, p.region, p.connector),
            read(f"projects/{p.project}/instances/{p.sql_instance}", self._sql, p.project,
                 p.sql_instance),
            asyncio.gather(*(read(service_name(p.project, p.region, s), self._service,
                                  p.project, p.region, s) for s in p.run_services)),
            asyncio.gather(*(read(f"healthChecks/{h}", self._health_check, p.project, h)
                             for h in p.health_checks)),
            asyncio.gather(*(read(f"backendServices/{b}", self._backend_service, p.project, b)
                             for b in p.backend_services)),
            read(f"sslCertificates/{p.certificate}", self._certificate, p.project,
                 p.certificate),
            read_secret_states(self.clients, p.project, p.required_secrets),
            read(f"projects/{p.project}/alertPolicies", self._alert_policies, p.project,
                 p.alert_policy_names),
        )
        # Absent services/health checks/backend services are left out: the plan's
        # preflight names what is missing.
        return Diagnosis(
            connector=connector, sql=sql,
            run_services=[s for s in services if s is not None],
            health_checks=[h for h in hcs if h is not None],
            backend_services=[b for b in bss if b is not None],
            certificate=cert, secrets=secrets, alert_policies=policies,
        )

    def _connector_utilisation(self, p: VerifyInfrastructureParams) -> dict[str, Any]:
        points = latest_points(self.clients, p.project, (
            f'metric.type = "{CONNECTOR_UTILISATION}" AND resource.type = "vpc_access_connector" '
            f'AND resource.label.connector_name = "{p.connector}" '
            f'AND resource.label.location = "{p.region}"'))
        if not points:
            return {"utilisation": NO_DATA}
        at, value = max(points, key=lambda x: x[1])  # one series per connector; the worst
        return {"utilisation": round(value, 4), "at": at}

    def _db_backends(self, p: VerifyInfrastructureParams) -> dict[str, Any]:
        points = latest_points(self.clients, p.project, (
            f'metric.type = "{SQL_BACKENDS}" AND resource.type = "cloudsql_database" '
            f'AND resource.label.database_id = "{p.project}:{p.sql_instance}"'))
        if not points:
            return {"in_use": NO_DATA}
        # One series per database on the instance: the instance's connections are the sum.
        return {"in_use": int(sum(v for _, v in points)), "at": max(at for at, _ in points)}

    @activity.defn(name=activity_names.VERIFY_INFRASTRUCTURE)
    async def verify_infrastructure(self, p: VerifyInfrastructureParams) -> StepOutcome:
        conn_name = connector_name(p.project, p.region, p.connector)
        svc_name = service_name(p.project, p.region, p.service)
        metrics = f"projects/{p.project}/timeSeries"
        connector, sql, svc, conn_use, db_use = await asyncio.gather(
            guarded("verify", conn_name, asyncio.to_thread(read_connector, self.clients,
                                                            conn_name)),
            guarded("verify", p.sql_instance, asyncio.to_thread(
                lambda: execute(self.clients.discovery("sqladmin").instances().get(
                    project=p.project, instance=p.sql_instance)))),
            guarded("verify", svc_name, asyncio.to_thread(read_service, self.clients, svc_name)),
            guarded("read connector utilisation", metrics,
                    asyncio.to_thread(self._connector_utilisation, p)),
            guarded("read database connections", metrics, asyncio.to_thread(self._db_backends, p)),
        )
        serving = [t for t in svc.get("trafficStatuses", []) if t.get("percent", 0) > 0]
        flags = {f.get("name"): f.get("value")
                 for f in sql.get("settings", {}).get("databaseFlags", [])}
        max_conn = _int(flags.get("max_connections"))
        # No data points is not a failure: right after a change Cloud Monitoring can lag
        # by a few minutes, and the phase-3 alert policies watch both figures afterwards.
        if db_use["in_use"] == NO_DATA:
            db_use["use"] = NO_DATA
        elif not max_conn:
            # The tier default is not exposed by the API; without the flag the limit is unknown.
            db_use["use"] = NO_MAX_CONNECTIONS
        else:
            db_use["use"] = round(db_use["in_use"] / max_conn, 4)
        figures: dict[str, Any] = {
            "connector": {k: connector[k] for k in ("state", "machineType", "minInstances",
                                                    "maxInstances")},
            "sql": {"state": sql.get("state", ""), "tier": sql.get("settings", {}).get("tier"),
                    "max_connections": max_conn},
            "service": {"rollout": rollout(svc),
                        "serving": [{"revision": t.get("revision", ""),
                                     "percent": t.get("percent", 0)} for t in serving]},
            "connector_utilisation": conn_use["utilisation"],
            "db_connections_in_use": db_use["in_use"],
            "db_connection_use": db_use["use"],
            "limits": {"connector_utilisation": p.max_connector_utilisation,
                       "db_connection_use": p.max_db_connection_use},
            "measured_at": {"connector": conn_use.get("at"), "database": db_use.get("at")},
        }
        problems = []
        if connector["state"] != "READY":
            problems.append(f"connector {conn_name} is {connector['state']}, not READY")
        for field, wanted in (("machineType", p.connector_machine_type),
                              ("minInstances", p.connector_min_instances),
                              ("maxInstances", p.connector_max_instances)):
            if wanted is not None and connector[field] != wanted:
                problems.append(f"connector {conn_name} {field} is {connector[field]}, "
                                f"expected {wanted}")
        u = conn_use["utilisation"]
        if isinstance(u, float) and u >= p.max_connector_utilisation:
            problems.append(f"connector {conn_name} utilisation is {u:.0%} ({u:g}), "
                            f"not under {p.max_connector_utilisation:.0%}")
        if sql.get("state") != "RUNNABLE":
            problems.append(f"Cloud SQL {p.sql_instance} is {sql.get('state')}, not RUNNABLE")
        use = db_use["use"]
        if isinstance(use, float) and use >= p.max_db_connection_use:
            problems.append(f"Cloud SQL {p.sql_instance} uses {db_use['in_use']} of "
                            f"{max_conn} connections ({use:.0%}), "
                            f"not under {p.max_db_connection_use:.0%}")
        if rollout(svc) != "ready":
            problems.append(f"service {svc_name} is {rollout(svc)}, not ready")
        if len(serving) != 1 or serving[0].get("percent") != 100:
            problems.append(f"service {svc_name} serves {figures['service']['serving']}, "
                            "not one revision at 100%")
        if problems:
            raise errors.step_failed("phase 1 not verified: " + "; ".join(problems), figures)

        def shown(value: Any) -> str:
            return f"{value:.0%}" if isinstance(value, float) else str(value)

        return read_outcome(
            svc_name, data=figures,
            detail=(f"connector READY ({connector['machineType']} "
                    f"{connector['minInstances']}-{connector['maxInstances']}, "
                    f"utilisation {shown(u)}), SQL RUNNABLE (connection use {shown(use)}), "
                    f"{serving[0].get('revision')} serves 100%"))
