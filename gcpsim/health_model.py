"""The application health model: 503 rate and latency derived from the world state.

Pure function of the stored resources (no randomness). See gcpsim/README.md for the
formulas and the default figures. The numbers that tune it live in the world's ``app``
section so a custom world can re-calibrate it.
"""
from __future__ import annotations

from typing import Any

from .cloud_sql import effective_max_connections, restarting
from .context import Sim
from .run_model import duration_seconds, env_of, limits, serving_revisions, short
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
}


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
    connector_name = next((r["vpcAccess"]["connector"] for s in services.values() for r, _ in s["revisions"]
                           if r.get("vpcAccess", {}).get("connector")), None)
    conn = store.get("vpcaccess", connector_name) if connector_name else None
    vpc: dict[str, Any] = {"name": connector_name, "demand_mbps": params["egress_demand_mbps"]}
    if conn and conn["state"] in ("READY", "UPDATING"):
        capacity = conn["maxInstances"] * MBPS_PER_INSTANCE[conn["machineType"]]
        u = params["egress_demand_mbps"] / capacity
        vpc |= {"available": True, "machineType": conn["machineType"], "maxInstances": conn["maxInstances"],
                "capacity_mbps": capacity, "utilisation": round(u, 4),
                # Written as in f_db so that no egress demand (u = 0) is no overflow, not 1/0.
                "overflow_share": round(max(0.0, 1 - capacity / params["egress_demand_mbps"])
                                        if params["egress_demand_mbps"] else 0.0, 4),
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
    endpoints = {}
    for route_id, r in out_routes.items():
        for path in routes[route_id].get("paths", []):
            latency = r["latency_ms"]["database" if path.endswith("/database") else "total"]
            endpoints[path] = {"route": route_id, "rate_503": r["rate_503"], "latency_ms": latency}
    return {"connector": vpc, "database": db, "routes": out_routes, "endpoints": endpoints}


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

    hc = sim.store.get("compute", route.get("health_check", "")) or {}
    bs = sim.store.get("compute", route.get("backend_service", "")) or {}
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
    if not svc:
        hard_down = f"Cloud Run service {route['service']} does not exist"
    elif not revs:
        hard_down = f"no ready revision of {short(svc['name'])} serves traffic"
    elif not vpc["available"]:
        hard_down = f"VPC connector {vpc['name']} is {vpc.get('state')}"
    elif uses_db and not db["available"]:
        hard_down = f"Cloud SQL instance {db['instance']} is {db.get('state')}"
    f_vpc, f_db = vpc["overflow_share"], db["refused_share"] if uses_db else 0.0
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
        rate = 1 - (1 - f_vpc) * (1 - f_db) * (1 - f_hc)

    # A WebSocket AI answer must fit in both the LB backend timeout (for WebSockets it
    # bounds the connection) and the Cloud Run request timeout.
    run_timeout = min((duration_seconds(r.get("timeout"), 300) or 300 for r, _ in revs), default=0)
    ws_limit = min(bs.get("timeoutSec", 30), run_timeout) if bs else run_timeout
    return {
        "service": route["service"],
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
