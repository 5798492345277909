"""The built-in worlds (RUNBOOK.md's broken staging) and world loading/dumping.

A world has the shape of ``GET /_sim/state``: ``projects``, ``app`` (the health model's
wiring and parameters), ``dns`` (host name -> IPv4, what the public DNS answers; it decides
whether a managed certificate can provision) and one group per API whose resources are
keyed by full resource name. Two worlds are built in (:data:`WORLDS`): ``serverless`` (the
default: Cloud Run behind serverless NEGs) and ``instance-group`` (the same backend
services on instance groups with health checks and a 30 s timeout). Records may carry
private bookkeeping under ``_sim``; a hand-written world may omit it and :func:`_complete`
fills it in.
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any

from google.cloud import run_v2

from . import certificates, health_model, world_check, world_lb
from .cloud_run import service_uri, set_service_status
from .context import Sim, digest, numeric_id, public
from .errors import invalid
from .run_model import (
    LATEST, REVISION, WRITABLE, build_revision, normalize, resolve_traffic, set_revision_status, short,
)

APIS = ("run", "vpcaccess", "sqladmin", "compute", "secretmanager", "monitoring", "redis")
WORLDS = ("serverless", "instance-group")
PROJECT, NUMBER, REGION = "netra-staging", "123456789012", "us-central1"
REQUIRED_SECRETS = ("database-url", "database-direct-url", "jwt-secret-staging", "redis-url", "oauth-client-id",
                    "oauth-client-secret", "openai-api-key", "anthropic-api-key", "smtp-password",
                    "cors-allowed-origins")
DAY = 86400.0


def _loc() -> str:
    return f"projects/{PROJECT}/locations/{REGION}"


CONNECTOR = f"{_loc()}/connectors/staging-connector"
BACKEND = f"{_loc()}/services/netra-backend-staging"
AUTH = f"{_loc()}/services/auth-staging"
SQL = f"projects/{PROJECT}/instances/netra-staging-db"
HC_BACKEND = f"projects/{PROJECT}/global/healthChecks/staging-backend-health-check"
HC_AUTH = f"projects/{PROJECT}/global/healthChecks/staging-auth-health-check"
REDIS = f"{_loc()}/instances/staging-redis"
BS_BACKEND = f"projects/{PROJECT}/global/backendServices/staging-backend-service"
BS_AUTH = f"projects/{PROJECT}/global/backendServices/staging-auth-service"


def _template(image: str, env: dict[str, str], secrets: dict[str, str], max_instances: int, sa: str,
              egress: str = "PRIVATE_RANGES_ONLY") -> dict:
    env_list: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    env_list += [{"name": k, "valueSource": {"secretKeyRef": {"secret": s, "version": "latest"}}}
                 for k, s in secrets.items()]
    tpl = {
        "containers": [{"image": image, "ports": [{"name": "http1", "containerPort": 8080}], "env": env_list,
                        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "cpuIdle": True,
                                      "startupCpuBoost": True}}],
        "scaling": {"minInstanceCount": 0, "maxInstanceCount": max_instances},
        "vpcAccess": {"connector": CONNECTOR, "egress": egress},
        "timeout": "300s",
        "serviceAccount": sa,
        "maxInstanceRequestConcurrency": 80,
        "executionEnvironment": "EXECUTION_ENVIRONMENT_GEN2",
    }
    # Stored exactly as a client's echo of it normalises, so echoing it is "no change".
    return normalize(tpl, run_v2.RevisionTemplate)


def _service(sim: Sim, name: str, templates: list[dict[str, Any]], split: list[int], t0: float) -> list[dict]:
    """A ready service whose revisions are built from ``templates`` (oldest first) and
    whose traffic is split by ``split`` over the newest revisions."""
    svc: dict[str, Any] = {
        "name": name, "uid": digest([name, "uid"], 22), "generation": str(len(templates)),
        "labels": {"env": "staging"}, "createTime": sim.iso(t0), "updateTime": sim.iso(t0 + DAY),
        "creator": "deployer@netra-staging.iam.gserviceaccount.com",
        "lastModifier": "deployer@netra-staging.iam.gserviceaccount.com",
        "ingress": "INGRESS_TRAFFIC_ALL", "launchStage": "GA", "template": templates[-1],
        "uri": service_uri(sim, name), "_sim": {"revision_counter": len(templates)},
    }
    svc["urls"] = [svc["uri"]]
    revisions = []
    for i, tpl in enumerate(templates, start=1):
        t = sim.iso(t0 + i * 3600)
        rev = build_revision(sim, svc, tpl, i, t)
        set_revision_status(rev, "READY", t)
        revisions.append(rev)
    serving = revisions[-len(split):]
    if len(split) == 1:
        svc["traffic"] = [{"type": LATEST, "percent": 100}]
    else:
        svc["traffic"] = [{"type": REVISION, "revision": short(r["name"]), "percent": p}
                          for r, p in zip(serving, split)]
    svc["latestReadyRevision"] = svc["latestCreatedRevision"] = revisions[-1]["name"]
    svc["observedGeneration"] = svc["generation"]
    svc["trafficStatuses"] = resolve_traffic(svc["traffic"], short(revisions[-1]["name"]), svc["uri"])
    set_service_status(svc, "CONDITION_SUCCEEDED", sim.iso(t0 + DAY))
    return [svc] + revisions


def default_world(sim: Sim) -> dict[str, Any]:
    """The serverless world (RUNBOOK.md's broken staging, as really deployed)."""
    return build_world(sim, "serverless")


def build_world(sim: Sim, name: str = "serverless") -> dict[str, Any]:
    """A built-in world by name (:data:`WORLDS`); 400 naming ``world`` otherwise."""
    if name not in WORLDS:
        raise invalid(f"world: '{name}' is not a built-in world; use one of {list(WORLDS)}.", "world")
    t0 = sim.now() - 30 * DAY
    w: dict[str, Any] = {api: {} for api in APIS}
    w["projects"] = [{"projectId": PROJECT, "projectNumber": NUMBER}]
    w["app"] = {
        # startup_seconds: how long the container takes before its startup probe answers with
        # healthy dependencies, plus startup_saturated_extra_seconds while the connector or
        # Cloud SQL is saturated (seeds 002-004: 600-900 s starts during the outage). The
        # backend's 300 s exceeds Cloud Run's default 240 s probe; its 720 s during the
        # outage exceeds the longest probe Cloud Run allows (480 s). internet_egress_mbps:
        # what the route sends to the internet, carried by the connector only with egress
        # ALL_TRAFFIC.
        "routes": {
            "backend": {"service": BACKEND, "health_check": HC_BACKEND, "backend_service": BS_BACKEND,
                        "paths": ["/health", "/health/database", "/health/redis", "/ws"], "uses_database": True,
                        "uses_redis": True, "startup_seconds": 300, "startup_saturated_extra_seconds": 420,
                        "internet_egress_mbps": 250},
            "auth": {"service": AUTH, "health_check": HC_AUTH, "backend_service": BS_AUTH,
                     "paths": ["/auth/health"], "uses_database": True, "startup_seconds": 30,
                     "internet_egress_mbps": 120},
        },
        "database": SQL,
        "redis": REDIS,
        "model": {},
    }
    w["dns"] = dict(world_lb.DNS)

    backend_env = {"ENVIRONMENT": "staging", "DATABASE_POOL_SIZE": "10", "DATABASE_MAX_OVERFLOW": "10",
                   "DATABASE_POOL_TIMEOUT": "30", "LOG_LEVEL": "info"}
    backend_secrets = {"DATABASE_URL": "database-url", "JWT_SECRET_KEY": "jwt-secret-staging",
                       "REDIS_URL": "redis-url", "OPENAI_API_KEY": "openai-api-key"}
    sa = "netra-backend@netra-staging.iam.gserviceaccount.com"
    backend_tpls = [
        _template("us-docker.pkg.dev/netra-staging/netra/backend:2025-09-14", backend_env, backend_secrets, 4, sa),
        _template("us-docker.pkg.dev/netra-staging/netra/backend:2025-09-15", backend_env, backend_secrets, 4, sa),
    ]
    auth_tpl = _template("us-docker.pkg.dev/netra-staging/netra/auth:2025-09-15",
                         {"ENVIRONMENT": "staging", "DATABASE_POOL_SIZE": "5", "DATABASE_MAX_OVERFLOW": "5"},
                         {"DATABASE_URL": "database-url", "JWT_SECRET_KEY": "jwt-secret-staging",
                          "OAUTH_CLIENT_ID": "oauth-client-id", "OAUTH_CLIENT_SECRET": "oauth-client-secret"},
                         3, "netra-auth@netra-staging.iam.gserviceaccount.com",
                         egress="ALL_TRAFFIC")  # seed 004: "auth-staging has incorrect VPC egress"
    for rec in _service(sim, BACKEND, backend_tpls, [50, 50], t0) + _service(sim, AUTH, [auth_tpl], [100], t0):
        w["run"][rec["name"]] = rec

    w["vpcaccess"][CONNECTOR] = {
        "name": CONNECTOR, "network": "staging-vpc", "ipCidrRange": "10.1.0.0/28", "state": "READY",
        "machineType": "e2-micro", "minInstances": 2, "maxInstances": 3, "minThroughput": 200,
        "maxThroughput": 300, "connectedProjects": [PROJECT],
        "subnet": {"name": "staging-subnet", "projectId": PROJECT}, "_sim": {},
    }

    w["sqladmin"][SQL] = {
        "kind": "sql#instance", "name": "netra-staging-db", "project": PROJECT,
        "connectionName": f"{PROJECT}:{REGION}:netra-staging-db", "databaseVersion": "POSTGRES_14",
        "databaseInstalledVersion": "POSTGRES_14_12", "region": REGION, "gceZone": f"{REGION}-a",
        "state": "RUNNABLE", "backendType": "SECOND_GEN", "instanceType": "CLOUD_SQL_INSTANCE",
        "selfLink": f"https://sqladmin.googleapis.com/v1/projects/{PROJECT}/instances/netra-staging-db",
        "ipAddresses": [{"type": "PRIVATE", "ipAddress": "10.20.0.3"}],
        "serviceAccountEmailAddress": f"p{NUMBER}-abcdef@gcp-sa-cloud-sql.iam.gserviceaccount.com",
        "createTime": sim.iso(t0), "etag": digest([SQL, 1], 32),
        "settings": {
            "kind": "sql#settings", "tier": "db-custom-1-3840", "edition": "ENTERPRISE",
            "activationPolicy": "ALWAYS", "availabilityType": "ZONAL", "pricingPlan": "PER_USE",
            "dataDiskSizeGb": "20", "dataDiskType": "PD_SSD", "settingsVersion": "7",
            "databaseFlags": [{"name": "log_min_duration_statement", "value": "1000"}],
            "ipConfiguration": {"ipv4Enabled": False,
                                "privateNetwork": f"projects/{PROJECT}/global/networks/staging-vpc"},
            "backupConfiguration": {"kind": "sql#backupConfiguration", "enabled": True, "startTime": "03:00"},
        },
        "_sim": {"op": None},
    }

    created = sim.iso(t0)
    w["compute"] = world_lb.topology(PROJECT, REGION, created, name)
    redis_name, redis_rec = world_lb.redis_instance(PROJECT, REGION, created)
    w["redis"][redis_name] = redis_rec
    # The managed certificate staging-netrasystems-ai-cert is deliberately missing.

    for i, secret in enumerate(REQUIRED_SECRETS):
        sname = f"projects/{NUMBER}/secrets/{secret}"
        w["secretmanager"][sname] = {"name": sname, "replication": {"automatic": {}}, "createTime": sim.iso(t0 + i),
                                     "etag": f'"{digest([sname], 14)}"', "labels": {"env": "staging"}}
        # database-url has history (a destroyed and a disabled version) to make "latest" matter.
        states = ["DESTROYED", "DISABLED", "ENABLED"] if secret == "database-url" else ["ENABLED"]
        for n, state in enumerate(states, start=1):
            vname = f"{sname}/versions/{n}"
            version = {"name": vname, "createTime": sim.iso(t0 + i + n * DAY), "state": state,
                       "replicationStatus": {"automatic": {}}, "etag": f'"{digest([vname], 14)}"',
                       "clientSpecifiedPayloadChecksum": False}
            if state == "DESTROYED":
                version["destroyTime"] = sim.iso(t0 + i + 2 * DAY)
            w["secretmanager"][vname] = version

    channel = f"projects/{PROJECT}/notificationChannels/{numeric_id('channel', 'oncall')}"
    w["monitoring"][channel] = {"name": channel, "type": "email", "displayName": "Staging on-call (email)",
                                "labels": {"email_address": "oncall-staging@netrasystems.ai"}, "enabled": True,
                                "verificationStatus": "VERIFIED", "userLabels": {}}
    return w


# ---- loading and dumping --------------------------------------------------------
def _complete(sim: Sim, api: str, name: str, rec: dict[str, Any]) -> dict[str, Any]:
    """Fill in private bookkeeping for records written without it (custom worlds)."""
    rec = copy.deepcopy(rec)
    priv = rec.setdefault("_sim", {})
    kind = name.split("/")[-2] if "/" in name else ""
    if api == "run" and kind == "services":
        rec.update({f: v for f, v in normalize(public(rec)).items() if f in WRITABLE})
        priv.setdefault("revision_counter", 0)  # load() raises it to cover the revisions present
        rec.setdefault("uri", service_uri(sim, name))
    elif api == "run" and kind == "revisions":
        m = re.search(r"-(\d{5})-[a-z]{3}$", name)
        priv.setdefault("number", int(m.group(1)) if m else 1)
        ready = next((c for c in rec.get("conditions", []) if c.get("type") == "Ready"), {})
        priv.setdefault("status", {"CONDITION_SUCCEEDED": "READY", "CONDITION_FAILED": "FAILED"}.get(
            ready.get("state"), "READY"))
        tpl = {k: rec[k] for k in ("scaling", "vpcAccess", "timeout", "serviceAccount", "containers",
                                   "maxInstanceRequestConcurrency", "executionEnvironment") if k in rec}
        priv.setdefault("template", normalize(tpl, run_v2.RevisionTemplate))
    elif api == "sqladmin":
        priv.setdefault("op", None)
    return rec


def load(sim: Sim, world: dict[str, Any]) -> None:
    """Replace the stored world with ``world``, or refuse it (400) and keep the stored one."""
    world_check.check_shape(world, APIS)
    with sim.store.transaction():  # a refusal raised inside rolls every change back
        world_check.refuse_unless_servable(lambda: _replace(sim, world))


def _replace(sim: Sim, world: dict[str, Any]) -> None:
    sim.store.wipe_world()
    sim.store.meta_set("world:projects", world["projects"])
    sim.store.meta_set("world:app", world.get("app", {}))
    sim.store.meta_set("world:dns", world.get("dns", {}))
    for api in APIS:
        for name, rec in (world.get(api) or {}).items():
            sim.store.put(api, name, _complete(sim, api, name, rec))
    # Revision counters must cover the revisions that exist.
    for svc in sim.store.list("run", "services"):
        revs = sim.store.list("run", "revisions", svc["name"] + "/revisions/")
        top = max((r["_sim"]["number"] for r in revs), default=0)
        if svc["_sim"]["revision_counter"] < top:
            svc["_sim"]["revision_counter"] = top
            sim.store.put("run", svc["name"], svc)
    # Managed certificates already attached in this world may start provisioning.
    certificates.reconcile(sim)
    # What every request computes must work on the new world.
    health_model.compute(sim)
    json.dumps(dump(sim), allow_nan=False)


def dump(sim: Sim) -> dict[str, Any]:
    resources = sim.store.all_resources()
    out: dict[str, Any] = {"projects": sim.projects(), "app": sim.app_params(),
                           "dns": sim.dns()}
    for api in APIS:
        out[api] = resources.get(api, {})
    return out
