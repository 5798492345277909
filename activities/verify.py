"""RUNBOOK phase 1's verification: the connector, Cloud SQL and the service are in the
state phase 1 asked for, judged also on Cloud Monitoring figures (connector utilisation,
database connection use).

Read-only: no checkpoint; any failure goes through the error map. A check that ran and
found the world bad is a ``StepFailed`` carrying the figures.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

from temporalio import activity

from activities import errors
from activities.clients import GcpClients, execute, int_or_none, list_all
from activities.run_service import read_service, rollout, service_name
from activities.mutation import guarded, read_outcome
from activities.vpc_access import connector_name, read_connector
from runbook import activity_names
from runbook.activity_io import StepOutcome, VerifyInfrastructureParams
from runbook.cloud_sql_limits import default_max_connections


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
    if dist is not None and int_or_none(dist.get("count")):
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


class VerifyActivities:
    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients

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
        tier = sql.get("settings", {}).get("tier", "")
        max_conn = int_or_none(flags.get("max_connections"))
        limit_source = "flag"
        if not max_conn:
            # Without the flag PostgreSQL runs on the tier's default, which the API does
            # not expose: take it from the documented table (GCP_FIDELITY A8; only the
            # smallest row is sourced, the rest are marked unverified there).
            max_conn = default_max_connections(tier)
            limit_source = "tier default" if max_conn else "unknown"
        # No data points is not a failure: right after a change Cloud Monitoring can lag
        # by a few minutes, and the phase-3 alert policies watch both figures afterwards.
        if db_use["in_use"] == NO_DATA:
            db_use["use"] = NO_DATA
        elif not max_conn:
            db_use["use"] = f"{NO_MAX_CONNECTIONS} and no known default for tier {tier}"
        else:
            db_use["use"] = round(db_use["in_use"] / max_conn, 4)
        figures: dict[str, Any] = {
            "connector": {k: connector[k] for k in ("state", "machineType", "minInstances",
                                                    "maxInstances")},
            "sql": {"state": sql.get("state", ""), "tier": tier,
                    "max_connections": max_conn, "max_connections_source": limit_source},
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
                            f"{max_conn} connections"
                            + (f" (the default of {tier})" if limit_source != "flag" else "")
                            + f" ({use:.0%}), "
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
