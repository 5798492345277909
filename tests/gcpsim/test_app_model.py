"""The simulated application: 503s and latency follow from the world state.

The calibrated remediation is applied with the real clients; rolling it back (all but the
connector, which can only grow) brings the 503s back."""
from __future__ import annotations

import math
import urllib.error
import urllib.request

import pytest
from gcpsim_helpers import (
    AUTH, BACKEND, CONNECTOR, CONNECTOR_FILTER, MAX_PROBE, PROJECT, REDIS, SQL_FILTER, advance, discovery,
    gapic_options, raw, remediate_infrastructure, series, value, ws_session,
)
from google.cloud import run_v2

REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
PRIVATE_RANGES_ONLY = run_v2.VpcAccess.VpcEgress.PRIVATE_RANGES_ONLY
SQL_FLAGS = [{"name": "log_min_duration_statement", "value": "1000"}]


def hit(sim, path: str, n: int) -> tuple[int, list[float]]:
    failures, latencies = 0, []
    for _ in range(n):
        try:
            with urllib.request.urlopen(sim.endpoint + path, timeout=10) as resp:
                latencies.append(float(resp.headers["X-Sim-Latency-Ms"]))
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            failures += 1
    return failures, latencies


def remediate(sim) -> run_v2.Service:
    """The calibrated remediation with the real clients; returns the backend before it.

    Connector e2-standard-4 3-10; SQL db-custom-2-7680 with NO max_connections flag (the
    tier default, 400, applies: A8), both waited for first: while they saturate the backend
    needs 300 + 420 s to start, more than any startup probe allows (480 s). Then backend
    pool 8/8, 4 CPU, 6Gi, scaling 2-15, timeout 900 s, the longest startup probe Cloud Run
    allows (240 + 24 x 10 = 480 s) for its 300 s start (A2), LATEST 100%; auth egress
    PRIVATE_RANGES_ONLY (B2). No health check or backend timeout change: behind serverless
    NEGs they are refused or meaningless (A1)."""
    remediate_infrastructure(sim, sql_flags=SQL_FLAGS)
    services = run_v2.ServicesClient(**gapic_options(sim))
    original = services.get_service(name=BACKEND)
    svc = run_v2.Service(original)
    c = svc.template.containers[0]
    env = {e.name: e for e in c.env}
    for k, v in {"DATABASE_POOL_SIZE": "8", "DATABASE_MAX_OVERFLOW": "8"}.items():
        env[k] = run_v2.EnvVar(name=k, value=v)
    del c.env[:]
    c.env.extend(env.values())
    c.resources.limits["memory"] = "6Gi"
    c.resources.limits["cpu"] = "4"
    c.startup_probe = run_v2.Probe(**MAX_PROBE, http_get=run_v2.HTTPGetAction(path="/health"))
    svc.template.scaling.min_instance_count = 2
    svc.template.scaling.max_instance_count = 15
    svc.template.timeout = {"seconds": 900}
    del svc.traffic[:]
    svc.traffic.append(run_v2.TrafficTarget(type_=LATEST, percent=100))
    op = services.update_service(service=svc)
    auth = services.get_service(name=AUTH)
    auth.template.vpc_access.egress = PRIVATE_RANGES_ONLY
    auth_op = services.update_service(service=auth)
    advance(sim, 350)  # backend start 300 s (healthy dependencies), auth 30 s
    op.result(timeout=30)
    auth_op.result(timeout=30)
    return original


def rollback(sim, original: run_v2.Service) -> None:
    """SQL back to its tier; the backend's traffic routed back to its old revisions (A10)."""
    sql = discovery(sim, "sqladmin", "v1")
    sql.instances().patch(project=PROJECT, instance="netra-staging-db", body={"settings": {
        "tier": "db-custom-1-3840", "databaseFlags": SQL_FLAGS}}).execute()
    services = run_v2.ServicesClient(**gapic_options(sim))
    svc = services.get_service(name=BACKEND)
    del svc.traffic[:]
    svc.traffic.extend(original.traffic)
    op = services.update_service(service=svc)
    advance(sim, 400)
    op.result(timeout=30)


def test_default_world_is_broken_exactly(sim):
    figures = sim.admin("GET", "/_sim/app")
    rate = figures["endpoints"]["/health"]["rate_503"]
    assert rate > 0.3
    # The figures the README documents for the default world.
    endpoints = {path: (e["rate_503"], e["latency_ms"]) for path, e in figures["endpoints"].items()}
    assert endpoints["/health"] == pytest.approx((0.5746, 8719), abs=1e-4)
    assert endpoints["/health/database"] == pytest.approx((0.5746, 7239), abs=1e-4)
    assert endpoints["/health/redis"] == pytest.approx((0.5746, 3836), abs=1e-4)
    assert endpoints["/auth/health"] == pytest.approx((0.5746, 7719), abs=1e-4)
    assert figures["connector"]["utilisation"] > 1 and figures["database"]["utilisation"] > 1
    assert figures["connector"]["demand_mbps"] == 375 + 120  # auth's egress ALL_TRAFFIC
    assert any("ALL_TRAFFIC" in r for r in figures["routes"]["auth"]["reasons"])
    assert len(figures["routes"]["backend"]["serving_revisions"]) == 2
    assert figures["routes"]["backend"]["health_check"] is None  # serverless NEG: no LB health check
    n = 40
    failures, latencies = hit(sim, "/health", n)
    assert failures == math.floor(n * rate + 1e-9)  # error diffusion: exact, deterministic
    assert min(latencies) > 5000
    auth_failures, _ = hit(sim, "/auth/health", 10)
    assert auth_failures == math.floor(10 * figures["endpoints"]["/auth/health"]["rate_503"] + 1e-9)
    first = ws_session(sim)  # accumulator starts low: the first session authenticates...
    # ...and, behind a serverless NEG (fixed 60 min LB timeout), Cloud Run's 300 s allow the answer
    assert [m["type"] for m in first] == ["auth_ok", "ai_response"]
    second = ws_session(sim)
    assert second == [second[0]] and second[0]["type"] == "error" and second[0]["code"] == 503


def test_instance_group_world_cuts_websockets_at_the_backend_timeout(sim):
    sim.admin("POST", "/_sim/reset", {"world": "instance-group"})
    route = sim.admin("GET", "/_sim/app")["routes"]["backend"]
    assert route["health_check"]["failing_share"] > 0  # slow /health flaps the LB health check
    first = ws_session(sim)
    assert first[0]["type"] == "auth_ok" and first[1]["code"] == 504


def test_calibrated_remediation_heals_and_rollback_breaks_again(sim):
    original = remediate(sim)
    figures = sim.admin("GET", "/_sim/app")
    assert figures["database"]["max_connections"] == 400  # the tier default, no flag
    assert all(r["rate_503"] == 0 for r in figures["routes"].values()), figures["routes"]
    for path, n, limit in (("/health", 30, 5000), ("/auth/health", 10, 5000), ("/health/database", 10, 2000),
                           ("/health/redis", 10, 5000)):
        failures, latencies = hit(sim, path, n)
        assert failures == 0 and max(latencies) < limit, path
    assert value(sim, CONNECTOR_FILTER) < 0.70
    (ts,) = series(sim, SQL_FILTER)["timeSeries"]
    assert int(ts["points"][0]["value"]["int64Value"]) / 400 < 0.75
    assert [m["type"] for m in ws_session(sim)] == ["auth_ok", "ai_response"]
    assert list(figures["routes"]["backend"]["serving_revisions"].values()) == [100]

    rollback(sim, original)
    figures = sim.admin("GET", "/_sim/app")
    assert len(figures["routes"]["backend"]["serving_revisions"]) == 2
    assert figures["endpoints"]["/health"]["rate_503"] > 0.2
    assert hit(sim, "/health", 20)[0] > 0
    assert any("Cloud SQL out of connections" in r for r in figures["routes"]["backend"]["reasons"])
    # auth-staging shares the database and suffers again
    assert figures["endpoints"]["/auth/health"]["rate_503"] > 0


def test_redis_health_needs_a_connector_on_the_authorized_network(sim):
    remediate(sim)
    assert hit(sim, "/health/redis", 3)[0] == 0
    state = sim.admin("GET", "/_sim/state")
    state["redis"][REDIS]["authorizedNetwork"] = f"projects/{PROJECT}/global/networks/other-vpc"
    sim.admin("POST", "/_sim/reset", state)
    assert hit(sim, "/health/redis", 3)[0] == 3 and hit(sim, "/health", 3)[0] == 0
    status, body = raw(sim, "GET", "/health/redis")
    assert status == 503 and "other-vpc" in body["reasons"][0]
    state["redis"][REDIS]["authorizedNetwork"] = f"projects/{PROJECT}/global/networks/staging-vpc"
    state["redis"][REDIS]["state"] = "MAINTENANCE"
    sim.admin("POST", "/_sim/reset", state)
    assert "MAINTENANCE" in raw(sim, "GET", "/health/redis")[1]["reasons"][0]


def test_missing_connector_takes_the_route_down(sim):
    state = sim.admin("GET", "/_sim/state")
    del state["vpcaccess"][CONNECTOR]
    sim.admin("POST", "/_sim/reset", state)
    figures = sim.admin("GET", "/_sim/app")
    assert figures["routes"]["backend"]["rate_503"] == 1.0
    assert "not found" in figures["routes"]["backend"]["reasons"][0]
    assert raw(sim, "GET", "/health/redis")[0] == 503


def test_no_egress_demand_means_no_connector_overflow(sim):
    state = sim.admin("GET", "/_sim/state")
    state["app"]["model"]["egress_demand_mbps"] = 0
    state["app"]["routes"]["auth"]["internet_egress_mbps"] = 0  # auth's egress is ALL_TRAFFIC
    sim.admin("POST", "/_sim/reset", state)
    connector = sim.admin("GET", "/_sim/app")["connector"]
    assert (connector["utilisation"], connector["overflow_share"]) == (0, 0)
    failures, latencies = hit(sim, "/health", 3)  # hit() fails on anything but 200 or 503
    assert failures + len(latencies) == 3
