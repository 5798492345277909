"""The application health model: 503 rate and latency derived from the world state.

Pure function of the stored resources (no randomness). See gcpsim/README.md for the
formulas and the default figures. The numbers that tune it live in the world's ``app``
section so a custom world can re-calibrate it.
"""
from __future__ import annotations

from typing import Any

from .cloud_sql import effective_max_connections, restarting
from .compute import has_serverless_neg, ref_key
from .context import Sim
from .run_limits import limits
from .run_model import duration_seconds, env_of, serving_revisions, short
from .vpc_access import MBPS_PER_INSTANCE

DEFAULTS: dict[str, Any] = {
    "egress_demand_mbps": 375,   # traffic the app sends through the VPC connector
    "base_latency_ms": 200,      # request CPU time at 1 vCPU (scales down with more vCPUs, up to 4)
    "low_memory_penalty_ms": 300,  # GC/memory pressure below 1 GiB per instance
    "low_memory_threshold_gib": 1,
    "vpc_base_ms": 20,           # connector hop at utilisation 1.0 when below the knee
    "vpc_knee": 0.7,             # above this utilisation the connector queues
    "vpc_queue_ms": 4000,        # extra latency per unit of utilisation above the knee
    "db_base_ms": 30,            # a query when a connection is free
    "db_knee": 0.75,             # connection use above which requests wait for a connection
    "db_wait_ms": 5000,          # extra latency per unit of connection use above the knee
    "contention_ms": 1000,       # per extra revision serving traffic (duplicated warm-up, pools)
    "default_pool_size": 5,      # SQLAlchemy defaults when the env does not set them
    "default_max_overflow": 10,
    "ai_response_seconds": 40,   # how long a WebSocket AI answer streams (LB/Run timeouts must allow it)
    "redis_ms": 2,               # a Redis round trip once the connector hop is paid
}
# An external HTTPS load balancer's backend timeout for serverless NEG backends is fixed at
# 60 minutes (Load Balancing docs, serverless NEGs overview; GCP_FIDELITY A1).
SERVERLESS_LB_TIMEOUT_S = 3600
USABLE_CONNECTOR_STATES = ("READY", "UPDATING")


def _knee(u: float, base: float, knee: float, slope: float) -> float:
    return base * u if u <= knee else base * knee + slope * (u - knee)


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def compute(sim: Sim) -> dict[str, Any]:
    params = DEFAULTS | sim.app_params().get("model", {})
    routes = sim.app_params().get("routes", {})
    store = sim.store

    services: dict[str, dict[str, Any]] = {}
    for route_id, route in routes.items():
        svc = store.get("run", route["service"])
        revs = []
        if svc:
            for rev_short, pct in serving_revisions(svc).items():
                rev = store.get("run", f"{svc['name']}/revisions/{rev_short}")
                if rev and rev["_sim"]["status"] == "READY":
                    revs.append((rev, pct))
        services[route_id] = {"route": route, "service": svc, "revisions": revs}

    # --- VPC connector: one shared connector carries the app's egress ---------------
    # Its demand is the app's private traffic (Cloud SQL, Redis) plus, for every serving
    # revision with egress ALL_TRAFFIC, its share of the route's internet traffic.
    connector_name = next((r["vpcAccess"]["connector"] for s in services.values() for r, _ in s["revisions"]
                           if r.get("vpcAccess", {}).get("connector")), None)
    conn = store.get("vpcaccess", connector_name) if connector_name else None
    demand = float(params["egress_demand_mbps"])
    for s in services.values():
        total_pct = sum(p for _, p in s["revisions"]) or 1
        for rev, pct in s["revisions"]:
            vpc_access = rev.get("vpcAccess", {})
            if vpc_access.get("connector") == connector_name and vpc_access.get("egress") == "ALL_TRAFFIC":
                demand += s["route"].get("internet_egress_mbps", 0) * pct / total_pct
    demand = round(demand, 3)
    vpc: dict[str, Any] = {"name": connector_name, "demand_mbps": demand}
    if conn and conn["state"] in USABLE_CONNECTOR_STATES:
        capacity = conn["maxInstances"] * MBPS_PER_INSTANCE[conn["machineType"]]
        u = demand / capacity
        vpc |= {"available": True, "machineType": conn["machineType"], "maxInstances": conn["maxInstances"],
                "network": conn.get("network"), "capacity_mbps": capacity, "utilisation": round(u, 4),
                # Written as in f_db so that no egress demand (u = 0) is no overflow, not 1/0.
                "overflow_share": round(max(0.0, 1 - capacity / demand) if demand else 0.0, 4),
                "latency_ms": round(_knee(u, params["vpc_base_ms"], params["vpc_knee"], params["vpc_queue_ms"]), 1)}
    else:
        vpc |= {"available": False, "overflow_share": 1.0, "latency_ms": 0.0,
                "state": conn["state"] if conn else "MISSING"}

    # --- Cloud SQL: connection pools of every serving revision vs max_connections ----
    inst_key = sim.app_params().get("database")
    inst = store.get("sqladmin", inst_key) if inst_key else None
    pools = []
    for route_id, s in services.items():
        if not s["route"].get("uses_database", True):
            continue
        svc_max = (s["service"] or {}).get("scaling", {}).get("maxInstanceCount")
        for rev, _pct in s["revisions"]:
            env = env_of(rev["_sim"]["template"])
            size = _int(env.get("DATABASE_POOL_SIZE"), params["default_pool_size"])
            overflow = _int(env.get("DATABASE_MAX_OVERFLOW"), params["default_max_overflow"])
            instances = rev.get("scaling", {}).get("maxInstanceCount", 100)
            if svc_max:
                instances = min(instances, svc_max)
            # Pools sit at their base size and, under this load, use half their overflow.
            pools.append({"revision": short(rev["name"]), "instances": instances, "pool_size": size,
                          "max_overflow": overflow, "connections": instances * (size + overflow / 2)})
    demand = sum(p["connections"] for p in pools)
    db: dict[str, Any] = {"instance": inst_key, "pools": pools, "demand_connections": demand}
    down = inst is not None and restarting(sim, inst)
    if inst and not down and inst["state"] == "RUNNABLE":
        cap = effective_max_connections(inst)
        u = demand / cap
        db |= {"available": True, "tier": inst["settings"]["tier"], "max_connections": cap,
               "utilisation": round(u, 4), "refused_share": round(max(0.0, 1 - cap / demand) if demand else 0.0, 4),
               "latency_ms": round(params["db_base_ms"] + params["db_wait_ms"] * max(0.0, u - params["db_knee"]), 1)}
    else:
        db |= {"available": False, "refused_share": 1.0, "latency_ms": 0.0,
               "state": ("MAINTENANCE" if down else inst["state"]) if inst else "MISSING"}

    # --- per route: latency, health-check flapping, resulting 503 rate ---------------
    out_routes: dict[str, Any] = {}
    for route_id, s in services.items():
        out_routes[route_id] = _route(sim, params, s, vpc, db)
    redis = _redis(sim, services)
    endpoints = {}
    for route_id, r in out_routes.items():
        for path in routes[route_id].get("paths", []):
            rate, latency = r["rate_503"], r["latency_ms"]["total"]
            if path.endswith("/database"):
                latency = r["latency_ms"]["database"]
            elif path.endswith("/redis"):
                latency = r["latency_ms"]["redis"]
                problem = redis["problems"].get(route_id)
                rate = 1.0 if problem else rate
            endpoints[path] = {"route": route_id, "rate_503": rate, "latency_ms": latency}
    return {"connector": vpc, "database": db, "redis": redis, "routes": out_routes, "endpoints": endpoints}


def startup_seconds(sim: Sim, service_name: str) -> float:
    """How long the service's container takes to answer its startup probe (world app routes).

    ``startup_seconds`` is a start with healthy dependencies; a route that waits on them
    during start-up (pools opened at init) takes ``startup_saturated_extra_seconds`` more
    while the VPC connector overflows or Cloud SQL refuses connections, as in the seeds'
    600-900 s starts during the outage."""
    routes = {rid: r for rid, r in sim.app_params().get("routes", {}).items()
              if r.get("service") == service_name}
    if not routes:
        return 0.0
    figures = None
    worst = 0.0
    for rid, r in routes.items():
        seconds = float(r.get("startup_seconds", 0))
        extra = float(r.get("startup_saturated_extra_seconds", 0))
        if extra:
            figures = figures or compute(sim)
            shares = figures["routes"].get(rid, {}).get("shares", {})
            if shares.get("vpc", 0) > 0 or shares.get("db", 0) > 0:
                seconds += extra
        worst = max(worst, seconds)
    return worst


def _redis(sim: Sim, services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Can each Redis-using route reach the Memorystore instance? Only over a VPC connector
    that is usable and sits on the instance's authorized network (GCP_FIDELITY B1/B2)."""
    name = sim.app_params().get("redis")
    inst = sim.store.get("redis", name) if name else None
    problems: dict[str, str] = {}
    for route_id, s in services.items():
        if not s["route"].get("uses_redis"):
            continue
        if inst is None:
            problems[route_id] = f"Memorystore instance {name} does not exist"
            continue
        if inst.get("state") != "READY":
            problems[route_id] = f"Memorystore instance {short(name)} is {inst.get('state')}"
            continue
        if not s["revisions"]:
            problems[route_id] = "no ready revision serves traffic"
        for rev, _ in s["revisions"]:
            connector = rev.get("vpcAccess", {}).get("connector")
            if not connector:
                problems[route_id] = f"revision {short(rev['name'])} has no VPC connector: {inst['host']} unreachable"
            elif problem := _connector_problem(sim, [(rev, 0)]):
                problems[route_id] = problem
            else:
                network = sim.store.get("vpcaccess", connector).get("network")
                if short(network) != short(inst.get("authorizedNetwork")):
                    problems[route_id] = (f"VPC connector {short(connector)} is on network {short(network)}, "
                                          f"Redis {short(name)} only accepts {short(inst.get('authorizedNetwork'))}")
            if route_id in problems:
                break
    return {"instance": name, "state": inst.get("state") if inst else "MISSING",
            "host": inst.get("host") if inst else None, "problems": problems}


def _connector_problem(sim: Sim, revs: list) -> str | None:
    """A serving revision whose VPC connector is gone or unusable takes its route down."""
    for rev, _ in revs:
        connector = rev.get("vpcAccess", {}).get("connector")
        conn = sim.store.get("vpcaccess", connector) if connector else None
        if connector and conn is None:
            return f"VPC connector {connector} not found"
        if conn and conn["state"] not in USABLE_CONNECTOR_STATES:
            return f"VPC connector {connector} is {conn['state']}"
    return None


def _route(sim: Sim, params: dict[str, Any], s: dict[str, Any], vpc: dict[str, Any], db: dict[str, Any]):
    route, svc, revs = s["route"], s["service"], s["revisions"]
    reasons: list[str] = []
    total_pct = sum(p for _, p in revs) or 1
    cpu = sum(limits((r.get("containers") or [{}])[0])[0] * p for r, p in revs) / total_pct if revs else 1.0
    mem_gib = sum(limits((r.get("containers") or [{}])[0])[1] * p for r, p in revs) / total_pct / 2**30 if revs else 0
    uses_db = route.get("uses_database", True)
    lat = {
        "cpu": params["base_latency_ms"] / min(max(cpu, 0.25), 4.0),
        "memory": params["low_memory_penalty_ms"] if mem_gib < params["low_memory_threshold_gib"] else 0.0,
        "vpc": vpc["latency_ms"],
        "db": db["latency_ms"] if uses_db else 0.0,
        "contention": params["contention_ms"] * max(0, len(revs) - 1),
    }
    lat = {k: round(v, 1) for k, v in lat.items()}
    lat["total"] = round(sum(lat.values()), 1)
    lat["database"] = round(lat["vpc"] + lat["db"] + 20, 1)
    lat["redis"] = round(lat["vpc"] + params["redis_ms"] + 20, 1)

    bs_key = route.get("backend_service", "")
    bs = sim.store.get("compute", bs_key) or {}
    bs_project = bs_key.split("/")[1] if bs else ""  # keys are projects/{id}/global/...
    # Behind a serverless NEG the LB does not health-check Cloud Run and its timeout is fixed
    # (A1): only an instance-group backend service flaps on slow health or cuts WebSockets.
    serverless = bool(bs) and has_serverless_neg(sim, bs_project, bs)
    if serverless:
        hc = {}
    elif bs:
        attached = bs.get("healthChecks") or []
        hc = (sim.store.get("compute", ref_key(sim, bs_project, "global/healthChecks", attached[0])) or {}) \
            if attached else {}
    else:
        hc = sim.store.get("compute", route.get("health_check", "")) or {}
    f_hc = 0.0
    if hc:
        timeout_ms = hc["timeoutSec"] * 1000
        if lat["total"] > timeout_ms:
            # Probes time out; with healthy h / unhealthy u thresholds a backend spends
            # about h/(h+u) of the time marked down, scaled by the share of slow probes.
            h, u = hc["healthyThreshold"], hc["unhealthyThreshold"]
            f_hc = (lat["total"] - timeout_ms) / lat["total"] * h / (h + u)
            reasons.append(f"health check {short(hc['name'])} times out: health takes {lat['total']:.0f} ms, "
                           f"timeoutSec is {hc['timeoutSec']}")

    hard_down = None
    uses_shared = any(r.get("vpcAccess", {}).get("connector") == vpc["name"] for r, _ in revs)
    connector_problem = _connector_problem(sim, revs)
    if not svc:
        hard_down = f"Cloud Run service {route['service']} does not exist"
    elif not revs:
        hard_down = f"no ready revision of {short(svc['name'])} serves traffic"
    elif connector_problem:
        hard_down = connector_problem
    elif vpc["name"] is None:
        # No serving revision has VPC access: the private IPs (Cloud SQL, Redis) are unreachable.
        hard_down = "no serving revision has a VPC connector: the app's private dependencies are unreachable"
    elif uses_shared and not vpc["available"]:
        hard_down = f"VPC connector {vpc['name']} is {vpc.get('state')}"
    elif uses_db and not db["available"]:
        hard_down = f"Cloud SQL instance {db['instance']} is {db.get('state')}"
    f_vpc, f_db = vpc["overflow_share"] if uses_shared else 0.0, db["refused_share"] if uses_db else 0.0
    if hard_down:
        reasons.insert(0, hard_down)
        rate = 1.0
    else:
        if f_vpc > 0:
            reasons.append(f"VPC connector over capacity: {vpc['demand_mbps']} Mbps demand vs "
                           f"{vpc['capacity_mbps']} Mbps ({vpc['maxInstances']} x {vpc['machineType']})")
        if f_db > 0:
            reasons.append(f"Cloud SQL out of connections: pools need {db['demand_connections']:g} vs "
                           f"max_connections {db['max_connections']}")
        if len(revs) > 1:
            reasons.append(f"{len(revs)} revisions split traffic and contend for connections")
        if uses_shared and f_vpc > 0:
            for rev, _ in revs:
                if rev.get("vpcAccess", {}).get("egress") == "ALL_TRAFFIC":
                    reasons.append(f"revision {short(rev['name'])} has VPC egress ALL_TRAFFIC: its "
                                   f"{route.get('internet_egress_mbps', 0)} Mbps of internet traffic load the "
                                   "connector")
        rate = 1 - (1 - f_vpc) * (1 - f_db) * (1 - f_hc)

    # A WebSocket AI answer must fit in both the LB backend timeout (for WebSockets it
    # bounds the connection) and the Cloud Run request timeout.
    run_timeout = min((duration_seconds(r.get("timeout"), 300) or 300 for r, _ in revs), default=0)
    lb_timeout = SERVERLESS_LB_TIMEOUT_S if serverless else bs.get("timeoutSec", 30) if bs else None
    ws_limit = min(lb_timeout, run_timeout) if lb_timeout is not None else run_timeout
    return {
        "service": route["service"],
        "serverless": serverless,
        "serving_revisions": {short(r["name"]): p for r, p in revs},
        "cpu": cpu, "memory_gib": round(mem_gib, 3),
        "latency_ms": lat,
        "health_check": {"name": hc.get("name"), "timeoutSec": hc.get("timeoutSec"),
                         "failing_share": round(f_hc, 4)} if hc else None,
        "shares": {"vpc": f_vpc, "db": f_db, "health_check": round(f_hc, 4)},
        "rate_503": round(rate, 4),
        "websocket_limit_seconds": ws_limit,
        "ai_response_ok": ws_limit >= params["ai_response_seconds"],
        "reasons": reasons,
    }
