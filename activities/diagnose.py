"""Read-only diagnosis of every target, and the phase-1 verification.

Both change nothing, so they have no checkpoint; any failure goes through the error map.
Reads run concurrently in threads (each discovery call builds its own client).
"""

from __future__ import annotations

import asyncio
from typing import Any

from googleapiclient.errors import HttpError
from google.api_core import exceptions as gexc
from temporalio import activity

from activities.redaction import redact_env
from activities import errors
from activities.clients import GcpClients, execute
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

    @activity.defn(name=activity_names.VERIFY_INFRASTRUCTURE)
    async def verify_infrastructure(self, p: VerifyInfrastructureParams) -> StepOutcome:
        conn_name = connector_name(p.project, p.region, p.connector)
        svc_name = service_name(p.project, p.region, p.service)
        connector, sql, svc = await asyncio.gather(
            guarded("verify", conn_name, asyncio.to_thread(read_connector, self.clients,
                                                            conn_name)),
            guarded("verify", p.sql_instance, asyncio.to_thread(
                lambda: execute(self.clients.discovery("sqladmin").instances().get(
                    project=p.project, instance=p.sql_instance)))),
            guarded("verify", svc_name, asyncio.to_thread(read_service, self.clients, svc_name)),
        )
        serving = [t for t in svc.get("trafficStatuses", []) if t.get("percent", 0) > 0]
        figures: dict[str, Any] = {
            "connector": {k: connector[k] for k in ("state", "machineType", "minInstances",
                                                    "maxInstances")},
            "sql": {"state": sql.get("state", ""), "tier": sql.get("settings", {}).get("tier")},
            "service": {"rollout": rollout(svc),
                        "serving": [{"revision": t.get("revision", ""),
                                     "percent": t.get("percent", 0)} for t in serving]},
            # Connector utilisation needs Cloud Monitoring time series, which this
            # verification does not read; the alert policies of phase 3 watch it.
            "connector_utilisation": "not measured",
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
        if sql.get("state") != "RUNNABLE":
            problems.append(f"Cloud SQL {p.sql_instance} is {sql.get('state')}, not RUNNABLE")
        if rollout(svc) != "ready":
            problems.append(f"service {svc_name} is {rollout(svc)}, not ready")
        if len(serving) != 1 or serving[0].get("percent") != 100:
            problems.append(f"service {svc_name} serves {figures['service']['serving']}, "
                            "not one revision at 100%")
        if problems:
            raise errors.step_failed("phase 1 not verified: " + "; ".join(problems), figures)
        return read_outcome(
            svc_name, data=figures,
            detail=(f"connector READY ({connector['machineType']} "
                    f"{connector['minInstances']}-{connector['maxInstances']}), SQL RUNNABLE, "
                    f"{serving[0].get('revision')} serves 100%"))
