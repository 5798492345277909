"""The simulated application: 503s and latency follow from the world state.

The remediation of RUNBOOK.md is applied with the real clients; rolling it back (all but
the connector, which can only grow) brings the 503s back."""
from __future__ import annotations

import math
import urllib.error
import urllib.request

import pytest
from gcpsim_helpers import BACKEND, CONNECTOR, PROJECT, advance, discovery, gapic_options, ws_session
from google.cloud import run_v2

HCS = ("staging-backend-health-check", "staging-auth-health-check")
BSS = ("staging-backend-service", "staging-auth-service")
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST


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


def _compute_patch(compute, hc_body, bs_timeout):
    for hc in HCS:
        op = compute.healthChecks().patch(project=PROJECT, healthCheck=hc, body=hc_body).execute()
        compute.globalOperations().wait(project=PROJECT, operation=op["name"]).execute()
    for bs in BSS:
        fp = compute.backendServices().get(project=PROJECT, backendService=bs).execute()["fingerprint"]
        compute.backendServices().patch(project=PROJECT, backendService=bs,
                                        body={"timeoutSec": bs_timeout, "fingerprint": fp}).execute()


def remediate(sim) -> run_v2.Service:
    """RUNBOOK.md phases 1-2 with the real clients; returns the backend before the change."""
    vpc = discovery(sim, "vpcaccess", "v1")
    vpc.projects().locations().connectors().patch(
        name=CONNECTOR, updateMask="minInstances,maxInstances,machineType",
        body={"minInstances": 3, "maxInstances": 10, "machineType": "e2-standard-4"}).execute()
    sql = discovery(sim, "sqladmin", "v1")
    sql.instances().patch(project=PROJECT, instance="netra-staging-db", body={"settings": {
        "tier": "db-custom-2-7680", "databaseFlags": [{"name": "max_connections", "value": "300"},
                                                      {"name": "log_min_duration_statement", "value": "1000"}]}}
    ).execute()
    services = run_v2.ServicesClient(**gapic_options(sim))
    original = services.get_service(name=BACKEND)
    svc = run_v2.Service(original)
    c = svc.template.containers[0]
    env = {e.name: e for e in c.env}
    for k, v in {"DATABASE_POOL_SIZE": "8", "DATABASE_MAX_OVERFLOW": "8", "DATABASE_POOL_TIMEOUT": "120",
                 "VPC_CONNECTOR_SCALING_BUFFER": "30"}.items():
        env[k] = run_v2.EnvVar(name=k, value=v)
    del c.env[:]
    c.env.extend(env.values())
    c.resources.limits["memory"] = "6Gi"
    c.resources.limits["cpu"] = "4"
    svc.template.scaling.min_instance_count = 2
    svc.template.scaling.max_instance_count = 15
    svc.template.timeout = {"seconds": 900}
    del svc.traffic[:]
    svc.traffic.append(run_v2.TrafficTarget(type_=LATEST, percent=100))
    op = services.update_service(service=svc)
    _compute_patch(discovery(sim, "compute", "v1"),
                   {"checkIntervalSec": 30, "timeoutSec": 30, "unhealthyThreshold": 5, "healthyThreshold": 2}, 600)
    advance(sim, 400)  # connector 180 s, SQL tier change 300 s, rollout 45 s
    op.result(timeout=30)
    return original


def rollback(sim, original: run_v2.Service) -> None:
    sql = discovery(sim, "sqladmin", "v1")
    sql.instances().patch(project=PROJECT, instance="netra-staging-db", body={"settings": {
        "tier": "db-custom-1-3840", "databaseFlags": [{"name": "log_min_duration_statement", "value": "1000"}]}}
    ).execute()
    services = run_v2.ServicesClient(**gapic_options(sim))
    op = services.update_service(service=original)  # old template and the 50/50 split
    _compute_patch(discovery(sim, "compute", "v1"),
                   {"checkIntervalSec": 5, "timeoutSec": 5, "unhealthyThreshold": 2, "healthyThreshold": 2}, 30)
    advance(sim, 400)
    op.result(timeout=30)


def test_default_world_is_broken_exactly(sim):
    figures = sim.admin("GET", "/_sim/app")
    rate = figures["endpoints"]["/health"]["rate_503"]
    assert 0.3 <= rate <= 0.6
    # The figures the README documents for the default world.
    endpoints = {path: (e["rate_503"], e["latency_ms"]) for path, e in figures["endpoints"].items()}
    assert endpoints["/health"] == pytest.approx((0.5221, 7119), abs=1e-4)
    assert endpoints["/health/database"] == pytest.approx((0.5221, 5639), abs=1e-4)
    assert endpoints["/auth/health"] == pytest.approx((0.4899, 6119), abs=1e-4)
    assert figures["connector"]["utilisation"] > 1 and figures["database"]["utilisation"] > 1
    assert len(figures["routes"]["backend"]["serving_revisions"]) == 2
    n = 40
    failures, latencies = hit(sim, "/health", n)
    assert failures == math.floor(n * rate + 1e-9)  # error diffusion: exact, deterministic
    assert min(latencies) > 5000
    auth_failures, _ = hit(sim, "/auth/health", 10)
    assert auth_failures == math.floor(10 * figures["endpoints"]["/auth/health"]["rate_503"] + 1e-9)
    first = ws_session(sim)  # accumulator starts low: the first session authenticates...
    assert first[0]["type"] == "auth_ok"
    assert first[1]["type"] == "error" and first[1]["code"] == 504  # ...but LB timeout 30 s < AI answer
    second = ws_session(sim)
    assert second == [second[0]] and second[0]["type"] == "error" and second[0]["code"] == 503


def test_remediation_heals_and_rollback_breaks_again(sim):
    original = remediate(sim)
    figures = sim.admin("GET", "/_sim/app")
    assert figures["connector"]["utilisation"] < 0.7 and figures["database"]["utilisation"] < 0.75
    assert all(r["rate_503"] == 0 for r in figures["routes"].values()), figures["routes"]
    failures, latencies = hit(sim, "/health", 30)
    assert failures == 0 and max(latencies) < 5000
    failures, latencies = hit(sim, "/health/database", 10)
    assert failures == 0 and max(latencies) < 2000
    assert hit(sim, "/auth/health", 10)[0] == 0
    assert [m["type"] for m in ws_session(sim)] == ["auth_ok", "ai_response"]
    assert list(figures["routes"]["backend"]["serving_revisions"].values()) == [100]

    rollback(sim, original)
    figures = sim.admin("GET", "/_sim/app")
    assert len(figures["routes"]["backend"]["serving_revisions"]) == 2
    assert figures["endpoints"]["/health"]["rate_503"] > 0.2
    assert hit(sim, "/health", 20)[0] > 0
    assert any("Cloud SQL out of connections" in r for r in figures["routes"]["backend"]["reasons"])
    # auth-staging was never changed; it shares the database and suffers again
    assert figures["endpoints"]["/auth/health"]["rate_503"] > 0


def test_no_egress_demand_means_no_connector_overflow(sim):
    state = sim.admin("GET", "/_sim/state")
    state["app"]["model"]["egress_demand_mbps"] = 0
    sim.admin("POST", "/_sim/reset", state)
    connector = sim.admin("GET", "/_sim/app")["connector"]
    assert (connector["utilisation"], connector["overflow_share"]) == (0, 0)
    failures, latencies = hit(sim, "/health", 3)  # hit() fails on anything but 200 or 503
    assert failures + len(latencies) == 3
