"""Activity doubles for workflow tests, registered under the real activity names.

They live only under tests/. They keep a small in-memory world and follow the same
conventions as the real activities (read first, no-op if desired, heartbeat a checkpoint
before mutating, resume from heartbeat details, report the replaced state), so the
workflow's saga, idempotency and crash handling are exercised for real.
"""

from __future__ import annotations

import asyncio
import copy
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from runbook import activity_names as act
from runbook.activity_io import (
    BackendServiceState,
    CertificateState,
    CompensationInput,
    ConnectorState,
    Diagnosis,
    HealthCheckState,
    HttpsProxyState,
    MutationCheckpoint,
    NotifyOutcome,
    NotifyParams,
    RedisState,
    RunServiceState,
    SecretState,
    SqlInstanceState,
    StepOutcome,
    TrafficSplit,
)
from runbook.notifications import ChannelDelivery, ChannelNotice
from runbook.request import Targets

# Which backend service each health check belongs to where the backends take health
# checks (instance groups); a serverless NEG backend has none.
HEALTH_CHECK_OF = {"staging-backend-service": "staging-backend-health-check",
                   "staging-auth-service": "staging-auth-health-check"}
SERVICE_OF = {"staging-backend-service": "netra-backend-staging",
              "staging-auth-service": "auth-staging"}


def default_world() -> dict[str, dict[str, Any]]:
    t = Targets()
    vpc = {"vpc_connector": t.connector, "vpc_egress": "PRIVATE_RANGES_ONLY", "startup_probe": None}
    world: dict[str, dict[str, Any]] = {
        f"connector/{t.connector}": {"machine_type": "e2-micro", "min_instances": 2, "max_instances": 3},
        f"sql/{t.sql_instance}": {"tier": "db-custom-1-3840", "flags": {}},
        f"service/{t.backend_service}": {
            "env": {"ENV": "staging"}, "cpu": "1", "memory": "512Mi", "min_instances": 0,
            "max_instances": 100, "timeout_s": 300,
            "traffic": {"netra-backend-staging-00001-abc": 50, "netra-backend-staging-00002-def": 50},
            "revisions": ["netra-backend-staging-00001-abc", "netra-backend-staging-00002-def"],
            **vpc,
        },
        # seed 004: "auth-staging has incorrect VPC egress"
        f"service/{t.auth_service}": {
            "env": {"ENV": "staging"}, "cpu": "1", "memory": "512Mi", "min_instances": 0,
            "max_instances": 3, "timeout_s": 300, "traffic": {"LATEST": 100},
            "revisions": ["auth-staging-00001-aaa"], **vpc, "vpc_egress": "ALL_TRAFFIC",
        },
    }
    for hc in t.health_checks:
        world[f"healthcheck/{hc}"] = {"check_interval_s": 5, "timeout_s": 5,
                                      "healthy_threshold": 2, "unhealthy_threshold": 2}
    for bs in t.backend_services:
        world[f"backendservice/{bs}"] = {"timeout_s": 30}
    world[f"certificate/{t.certificate}"] = {}
    return world


# Failure injection: a list per step id; each entry is consumed by one attempt.
Injection = BaseException | Callable[[], BaseException]


@dataclass
class FakeCloud:
    world: dict[str, dict[str, Any]] = field(default_factory=default_world)
    # The load balancer's backends: instance groups (health checks and timeouts apply) or
    # serverless NEGs in front of Cloud Run (they do not: GCP_FIDELITY A1).
    serverless: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)  # (activity name, step id)
    mutations: list[str] = field(default_factory=list)  # resource keys changed, in order
    notifications: list[NotifyParams | ChannelNotice] = field(default_factory=list)
    failures: dict[str, list[Injection]] = field(default_factory=lambda: defaultdict(list))
    # step id -> event the double waits on after issuing its change (heartbeating)
    hold: dict[str, asyncio.Event] = field(default_factory=dict)
    holding: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))
    # soak: queue of 503 counts for successive samples (empty -> 0)
    soak_503s: list[int] = field(default_factory=list)
    # step ids whose compensation answers in a shape the workflow cannot decode
    garbled_undo: set[str] = field(default_factory=set)

    def restored_except_connector(self) -> bool:
        """Everything back as in the default world, except the connector (connectors only
        grow, so a rollback leaves it in place). Entries emptied by an undo (a deleted
        alert policy) count as absent, as in the default world."""
        def comparable(world: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
            return {k: v for k, v in world.items() if not k.startswith("connector/") and v}
        return comparable(self.world) == comparable(default_world())

    def _backend_state(self, name: str, rec: dict[str, Any]) -> BackendServiceState:
        if self.serverless:
            return BackendServiceState(name=name, timeout_s=rec["timeout_s"],
                                       backend_kind="SERVERLESS",
                                       cloud_run_services=[SERVICE_OF.get(name, name)])
        return BackendServiceState(name=name, timeout_s=rec["timeout_s"],
                                   backend_kind="INSTANCE_GROUP",
                                   health_checks=[HEALTH_CHECK_OF.get(name, "")])

    def step_calls(self, name: str) -> list[str]:
        return [sid for a, sid in self.calls if a == name]

    def compensations(self) -> list[str]:
        return [sid for a, sid in self.calls if a in _COMPENSATIONS]

    # ------------------------------------------------------------------ helpers ----------

    def _inject(self, step_id: str) -> None:
        queue = self.failures.get(step_id)
        if queue:
            err = queue.pop(0)
            raise err() if callable(err) else err

    async def _mutate(self, key: str, desired: dict[str, Any]) -> StepOutcome:
        info = activity.info()
        step_id = info.activity_id
        self.calls.append((info.activity_type, step_id))
        self._inject(step_id)
        resumed = info.heartbeat_details
        current = self.world.setdefault(key, {})
        target = {**current, **desired}
        if resumed:
            before = MutationCheckpoint.model_validate(resumed[0]).before
        elif current == target:
            return StepOutcome(changed=False, resource=key, before=copy.deepcopy(current),
                               after=copy.deepcopy(current), attempt=info.attempt,
                               detail="already as desired")
        else:
            before = copy.deepcopy(current)
        checkpoint = MutationCheckpoint(resource=key, before=before)
        activity.heartbeat(checkpoint.model_dump(mode="json"))
        if current != target:  # a resumed attempt finds the change already applied
            self.world[key] = target
            self.mutations.append(key)
        if step_id in self.hold:
            self.holding[step_id].set()
            try:
                while not self.hold[step_id].is_set():
                    activity.heartbeat(checkpoint.model_dump(mode="json"))
                    await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                if activity.is_worker_shutdown():
                    raise  # a crash: the process would report nothing
                raise ApplicationError("cancelled after the change was issued",
                                       checkpoint.model_dump(mode="json"),
                                       type="StepInterrupted", non_retryable=True) from None
        return StepOutcome(changed=True, resource=key, before=before,
                           after=copy.deepcopy(self.world[key]), attempt=info.attempt,
                           detail=f"{key} changed")

    async def _restore(self, inp: CompensationInput) -> Any:
        info = activity.info()
        self.calls.append((info.activity_type, inp.step_id))
        self._inject(f"undo-{inp.step_id}")
        if inp.step_id in self.garbled_undo:
            return {"restored": "maybe"}  # e.g. a worker of another version
        key = inp.outcome.resource
        if self.world.get(key) == inp.outcome.before:
            return StepOutcome(changed=False, resource=key, before=inp.outcome.before,
                               after=inp.outcome.before, detail="already restored")
        self.world[key] = copy.deepcopy(inp.outcome.before)
        self.mutations.append(f"undo:{key}")
        return StepOutcome(changed=True, resource=key, before=inp.outcome.after,
                           after=inp.outcome.before, detail=f"{key} restored")

    async def _read(self, data: dict[str, Any] | None = None) -> StepOutcome:
        info = activity.info()
        self.calls.append((info.activity_type, info.activity_id))
        self._inject(info.activity_id)
        return StepOutcome(changed=False, attempt=info.attempt, data=data or {})

    # ------------------------------------------------------------------ doubles ----------

    def activities(self) -> list[Callable]:
        cloud = self

        @activity.defn(name=act.DIAGNOSE)
        async def diagnose(p: dict) -> Diagnosis:
            cloud.calls.append((act.DIAGNOSE, activity.info().activity_id))
            cloud._inject("diagnose")
            w = cloud.world
            c = w[f"connector/{p['connector']}"]
            sql = w[f"sql/{p['sql_instance']}"]
            services = []
            for name in p["run_services"]:
                s = w.get(f"service/{name}")
                if s is None:
                    continue
                traffic = [TrafficSplit(revision=r, percent=pc) for r, pc in s["traffic"].items()]
                services.append(RunServiceState(
                    name=name, ready=True, latest_ready_revision=s["revisions"][-1],
                    latest_created_revision=s["revisions"][-1], revisions=s["revisions"],
                    traffic=traffic, env=s["env"], cpu=s["cpu"], memory=s["memory"],
                    min_instances=s["min_instances"], max_instances=s["max_instances"],
                    timeout_s=s["timeout_s"], vpc_connector=s["vpc_connector"],
                    vpc_egress=s["vpc_egress"], startup_probe=s["startup_probe"]))
            cert = w.get(f"certificate/{p['certificate']}", {})
            return Diagnosis(
                connector=ConnectorState(name=p["connector"], state="READY", **c),
                sql=SqlInstanceState(name=p["sql_instance"], state="RUNNABLE",
                                     database_version="POSTGRES_14", tier=sql["tier"],
                                     flags=sql["flags"],
                                     max_connections_min=14, max_connections_max=262143),
                run_services=services,
                health_checks=[HealthCheckState(name=h, **w[f"healthcheck/{h}"])
                               for h in p["health_checks"]],
                backend_services=[cloud._backend_state(b, w[f"backendservice/{b}"])
                                  for b in p["backend_services"]],
                topology_read=True, connector_network="staging-vpc",
                # ensure-certificate attaches the certificate beside the legacy one.
                https_proxy=HttpsProxyState(name=p["https_proxy"], exists=True,
                                            certificates=["staging-legacy-cert"]
                                            + ([p["certificate"]] if cert else []),
                                            url_map="staging-url-map",
                                            forwarding_rules=["staging-https-rule"],
                                            ip_addresses=["34.120.10.20"]),
                redis=RedisState(name=p["redis_instance"], exists=True, state="READY",
                                 host="10.30.0.4", port=6379, authorized_network="staging-vpc"),
                certificate=CertificateState(name=p["certificate"], exists=bool(cert),
                                             status=cert.get("status", ""),
                                             domains=cert.get("domains", [])),
                secrets=[SecretState(name=s, exists=True, latest_state="ENABLED")
                         for s in p["required_secrets"]],
                alert_policies=[k.split("/", 1)[1] for k, v in w.items()
                                if k.startswith("alert/") and v],
            )

        @activity.defn(name=act.SCALE_CONNECTOR)
        async def scale_connector(p: dict) -> StepOutcome:
            return await cloud._mutate(f"connector/{p['connector']}", {
                "machine_type": p["machine_type"], "min_instances": p["min_instances"],
                "max_instances": p["max_instances"]})

        @activity.defn(name=act.EXPAND_SQL)
        async def expand_sql(p: dict) -> StepOutcome:
            flags = {**cloud.world[f"sql/{p['instance']}"]["flags"], **p["flags"]}
            return await cloud._mutate(f"sql/{p['instance']}", {"tier": p["tier"], "flags": flags})

        @activity.defn(name=act.DEPLOY_REVISION)
        async def deploy_revision(p: dict) -> StepOutcome:
            key = f"service/{p['service']}"
            s = cloud.world[key]
            desired: dict[str, Any] = {"env": {**s["env"], **p["env"]}}
            for f in ("cpu", "memory", "min_instances", "max_instances", "timeout_s",
                      "startup_probe", "vpc_connector", "vpc_egress"):
                if p.get(f) is not None:
                    desired[f] = p[f]
            if {k: s.get(k) for k in desired} != desired:
                n = len(s["revisions"]) + 1
                desired["revisions"] = s["revisions"] + [f"{p['service']}-{n:05d}-new"]
            return await cloud._mutate(key, desired)

        @activity.defn(name=act.ROUTE_TRAFFIC_TO_LATEST)
        async def route_traffic(p: dict) -> StepOutcome:
            # Like Cloud Run's TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST: follows new revisions.
            return await cloud._mutate(f"service/{p['service']}", {"traffic": {"LATEST": 100}})

        @activity.defn(name=act.CONFIGURE_HEALTH_CHECK)
        async def configure_health_check(p: dict) -> StepOutcome:
            return await cloud._mutate(f"healthcheck/{p['health_check']}", {
                k: p[k] for k in ("check_interval_s", "timeout_s", "healthy_threshold",
                                  "unhealthy_threshold")})

        @activity.defn(name=act.SET_BACKEND_SERVICE_TIMEOUT)
        async def set_backend_timeout(p: dict) -> StepOutcome:
            return await cloud._mutate(f"backendservice/{p['backend_service']}",
                                       {"timeout_s": p["timeout_s"]})

        @activity.defn(name=act.ENSURE_ALERT_POLICY)
        async def ensure_alert_policy(p: dict) -> StepOutcome:
            return await cloud._mutate(f"alert/{p['display_name']}", {"threshold": p["threshold"]})

        @activity.defn(name=act.ENSURE_CERTIFICATE)
        async def ensure_certificate(p: dict) -> StepOutcome:
            return await cloud._mutate(f"certificate/{p['certificate']}",
                                       {"domains": p["domains"], "status": "ACTIVE"})

        @activity.defn(name=act.DELETE_OLD_REVISIONS)
        async def delete_old_revisions(p: dict) -> StepOutcome:
            s = cloud.world[f"service/{p['service']}"]
            serving = {s["revisions"][-1] if r == "LATEST" else r for r in s["traffic"]}
            return await cloud._mutate(f"service/{p['service']}",
                                       {"revisions": [r for r in s["revisions"] if r in serving]})

        @activity.defn(name=act.CHECK_SECRETS)
        async def check_secrets(p: dict) -> StepOutcome:
            return await cloud._read({"checked": p["secrets"]})

        @activity.defn(name=act.VERIFY_INFRASTRUCTURE)
        async def verify_infrastructure(p: dict) -> StepOutcome:
            return await cloud._read()

        @activity.defn(name=act.CHECK_REDIS)
        async def check_redis(p: dict) -> StepOutcome:
            return await cloud._read({"state": "READY", "network": "staging-vpc"})

        @activity.defn(name=act.PROBE_HEALTH)
        async def probe_health(p: dict) -> StepOutcome:
            return await cloud._read({"status": 200, "latency_ms": 12})

        @activity.defn(name=act.PROBE_WEBSOCKET)
        async def probe_websocket(p: dict) -> StepOutcome:
            return await cloud._read({"authenticated": True})

        @activity.defn(name=act.SAMPLE_ERROR_RATE)
        async def sample_error_rate(p: dict) -> StepOutcome:
            errors = cloud.soak_503s.pop(0) if cloud.soak_503s else 0
            return await cloud._read({"requests": p["requests"], "errors_503": errors,
                                      "errors_other": 0, "max_latency_ms": 20})

        @activity.defn(name=act.NOTIFY)
        async def notify(p: NotifyParams) -> NotifyOutcome:
            cloud.notifications.append(p)
            return NotifyOutcome(delivered=[c.kind for c in p.channels])

        @activity.defn(name=act.NOTIFY_CHANNEL)
        async def notify_channel(n: ChannelNotice) -> ChannelDelivery:
            # Inject with failures[f"notify:{channel}"], e.g. a dead webhook.
            cloud._inject(f"notify:{n.channel}")
            cloud.notifications.append(n)
            return ChannelDelivery(channel=n.channel, kind="log")

        def compensation(name: str) -> Callable:
            @activity.defn(name=name)
            async def undo(inp: CompensationInput) -> Any:
                return await cloud._restore(inp)
            return undo

        return [diagnose, scale_connector, expand_sql, deploy_revision, route_traffic,
                configure_health_check, set_backend_timeout, ensure_alert_policy,
                ensure_certificate, delete_old_revisions, check_secrets, verify_infrastructure,
                check_redis,
                probe_health, probe_websocket, sample_error_rate, notify, notify_channel,
                *(compensation(n) for n in _COMPENSATIONS)]


_COMPENSATIONS = (act.RESTORE_SQL, act.RESTORE_SERVICE, act.RESTORE_HEALTH_CHECK,
                  act.RESTORE_BACKEND_SERVICE, act.DELETE_ALERT_POLICY, act.DELETE_CERTIFICATE)
