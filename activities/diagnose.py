"""Read-only diagnosis of every target, taken before anything changes.

Besides each target's own settings it reads the load-balancer topology (what fronts each
backend service and what serves it), the connector's network and the Redis instance, so
the plan applies only the steps that can work on this topology (GCP_FIDELITY A1, B1).
Nothing changes, so there is no checkpoint; any failure goes through the error map.
Reads run concurrently in threads (each discovery call builds its own client).
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity

from activities.clients import GcpClients, execute, int_or_none, or_none_on_404, short
from activities.run_service import list_revisions, read_service, rollout, service_name
from activities.run_traffic import LATEST
from activities.compute import cert_record, hc_record
from activities.load_balancing import read_backend_service, read_topology
from activities.memorystore import read_redis, redis_name
from activities.monitoring import list_alert_policies
from activities.mutation import guarded
from activities.redaction import redact_env
from activities.run_template import config_view
from activities.secret_manager import read_secret_states
from activities.vpc_access import connector_name, connector_network, read_connector
from runbook import activity_names
from runbook.activity_io import (
    CertificateState,
    ConnectorState,
    Diagnosis,
    DiagnoseParams,
    HealthCheckState,
    RedisState,
    RunServiceState,
    SqlInstanceState,
    TrafficSplit,
)


class DiagnoseActivities:
    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients

    # -- reads (run in threads) -----------------------------------------------------------

    def _connector(self, project: str, region: str,
                   connector: str) -> tuple[ConnectorState, str]:
        """The connector's size and the short name of its VPC network."""
        c = read_connector(self.clients, connector_name(project, region, connector))
        state = ConnectorState(name=c["name"], state=c["state"], machine_type=c["machineType"],
                               min_instances=c["minInstances"], max_instances=c["maxInstances"])
        return state, connector_network(self.clients, project, region, c)

    def _sql(self, project: str, instance: str) -> SqlInstanceState:
        api = self.clients.discovery("sqladmin")
        inst = execute(api.instances().get(project=project, instance=instance))
        version = inst.get("databaseVersion", "")
        # The flag's accepted range, so preflight can refuse a max_connections value before
        # anything changes. tiers.list is not read: what it returns per project is
        # unverified and a valid custom tier may be missing from it (GCP_FIDELITY A9).
        flags = execute(api.flags().list(databaseVersion=version)).get("items", []) \
            if version else []
        max_conn = next((f for f in flags if f.get("name") == "max_connections"), {})
        settings = inst.get("settings", {})
        return SqlInstanceState(
            name=inst.get("name", instance), state=inst.get("state", ""),
            database_version=version, tier=settings.get("tier", ""),
            edition=settings.get("edition", ""),
            flags={f["name"]: str(f.get("value", "")) for f in settings.get("databaseFlags", [])},
            max_connections_min=int_or_none(max_conn.get("minValue")),
            max_connections_max=int_or_none(max_conn.get("maxValue")),
        )

    def _service(self, project: str, region: str, service: str) -> RunServiceState | None:
        name = service_name(project, region, service)
        svc = or_none_on_404(read_service, self.clients, name)
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
            timeout_s=view["timeout_s"], vpc_connector=view["vpc_connector"],
            vpc_egress=view["vpc_egress"], startup_probe=view["startup_probe"],
        )

    def _health_check(self, project: str, name: str) -> HealthCheckState | None:
        api = self.clients.discovery("compute")
        hc = or_none_on_404(lambda: execute(api.healthChecks().get(project=project,
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

    def _certificate(self, project: str, name: str) -> CertificateState:
        api = self.clients.discovery("compute")
        cert = or_none_on_404(lambda: execute(api.sslCertificates().get(
            project=project, sslCertificate=name)))
        rec = cert_record(cert)
        return CertificateState(name=name, exists=rec["exists"], status=rec.get("status", ""),
                                domains=rec.get("domains", []),
                                domain_status=rec.get("domain_status", {}))

    def _alert_policies(self, project: str, wanted: list[str]) -> list[str]:
        names = [p.get("displayName", "") for p in list_alert_policies(self.clients, project)]
        return sorted(n for n in names if not wanted or n in wanted)

    # -- activities -------------------------------------------------------------------

    @activity.defn(name=activity_names.DIAGNOSE)
    async def diagnose(self, p: DiagnoseParams) -> Diagnosis:
        def read(what: str, fn: Any, *args: Any) -> Any:
            return guarded("diagnose", what, asyncio.to_thread(fn, *args))

        (connector, network), sql, services, hcs, cert, secrets, policies, topology, \
            redis = await asyncio.gather(
                read(connector_name(p.project, p.region, p.connector), self._connector,
                     p.project, p.region, p.connector),
                read(f"projects/{p.project}/instances/{p.sql_instance}", self._sql, p.project,
                     p.sql_instance),
                asyncio.gather(*(read(service_name(p.project, p.region, s), self._service,
                                      p.project, p.region, s) for s in p.run_services)),
                asyncio.gather(*(read(f"healthChecks/{h}", self._health_check, p.project, h)
                                 for h in p.health_checks)),
                read(f"sslCertificates/{p.certificate}", self._certificate, p.project,
                     p.certificate),
                read_secret_states(self.clients, p.project, p.required_secrets),
                read(f"projects/{p.project}/alertPolicies", self._alert_policies, p.project,
                     p.alert_policy_names),
                read(f"projects/{p.project}/global/forwardingRules", read_topology,
                     self.clients, p.project, p.https_proxy),
                self._redis(p),
            )
        load_balancers, proxy = topology
        # The target backend services, then any other one the load balancers route to
        # (a health check attached there matters to the plan too).
        wanted = list(p.backend_services)
        for lb in load_balancers:
            wanted += [b for b in lb.backend_services if b not in wanted]
        bss = await asyncio.gather(*(
            read(f"backendServices/{b}", read_backend_service, self.clients, p.project, b)
            for b in wanted))
        # Absent services/health checks/backend services are left out: the plan's
        # preflight names what is missing.
        return Diagnosis(
            connector=connector, sql=sql,
            run_services=[s for s in services if s is not None],
            health_checks=[h for h in hcs if h is not None],
            backend_services=[b for b in bss if b is not None],
            certificate=cert, secrets=secrets, alert_policies=policies,
            topology_read=True, load_balancers=load_balancers, https_proxy=proxy,
            connector_network=network, redis=redis,
        )

    async def _redis(self, p: DiagnoseParams) -> RedisState | None:
        if not p.redis_instance:
            return None
        return await guarded("diagnose", redis_name(p.project, p.region, p.redis_instance),
                             asyncio.to_thread(read_redis, self.clients, p.project, p.region,
                                               p.redis_instance))
