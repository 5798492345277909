"""Fault injection: every kind fires as specified and is counted."""
from __future__ import annotations

import pytest
from gcpsim_helpers import (
    BACKEND, CONNECTOR, PROJECT, add_fault, advance, discovery, gapic_options, mutations, raw, ws_session,
)
from google.api_core import exceptions
from google.cloud import run_v2
from googleapiclient.errors import HttpError


def test_http_fault_counts_and_statuses(sim):
    add_fault(sim, kind="http", api="sqladmin", method="PATCH", resource="netra-staging-db", status=503, count=2)
    sql = discovery(sim, "sqladmin", "v1")
    patch = sql.instances().patch(project=PROJECT, instance="netra-staging-db",
                                  body={"settings": {"databaseFlags": []}})
    for _ in range(2):
        with pytest.raises(HttpError) as err:
            patch.execute()
        assert err.value.status_code == 503
    sql.instances().get(project=PROJECT, instance="netra-staging-db").execute()  # GET does not match
    assert patch.execute()["kind"] == "sql#operation"
    (fault,) = sim.admin("GET", "/_sim/faults")["faults"]
    assert (fault["fired"], fault["remaining"]) == (2, 0)

    add_fault(sim, kind="http", api="run", status=429)
    services = run_v2.ServicesClient(**gapic_options(sim))
    with pytest.raises(exceptions.TooManyRequests):
        services.get_service(name=BACKEND, retry=None)
    add_fault(sim, kind="http", api="run", method="PATCH", status=409, reason="aborted")
    with pytest.raises(exceptions.Conflict):
        services.update_service(service=services.get_service(name=BACKEND))
    add_fault(sim, kind="http", api="secretmanager", status=403, count=1)
    with pytest.raises(HttpError) as err:
        discovery(sim, "secretmanager", "v1").projects().secrets().get(
            name=f"projects/{PROJECT}/secrets/redis-url").execute()
    assert err.value.status_code == 403
    status, body = raw(sim, "POST", "/_sim/faults", {"kind": "http", "status": 401})
    assert status == 400 and "401" in body["error"]["message"]
    sim.admin("DELETE", "/_sim/faults")
    assert sim.admin("GET", "/_sim/faults")["faults"] == []


def test_operation_hang_never_finishes(sim):
    add_fault(sim, kind="operation_hang", api="vpcaccess")
    vpc = discovery(sim, "vpcaccess", "v1")
    op = vpc.projects().locations().connectors().patch(
        name=CONNECTOR, updateMask="minInstances,maxInstances,machineType",
        body={"minInstances": 3, "maxInstances": 10, "machineType": "e2-standard-4"}).execute()
    advance(sim, 100000)
    assert vpc.projects().locations().operations().get(name=op["name"]).execute()["done"] is False
    assert vpc.projects().locations().connectors().get(name=CONNECTOR).execute()["state"] == "UPDATING"


def test_run_operation_error_code(sim):
    add_fault(sim, kind="operation_error", api="run", code=14, message="backend unavailable")
    services = run_v2.ServicesClient(**gapic_options(sim))
    svc = services.get_service(name=BACKEND)
    svc.labels["x"] = "y"
    op = services.update_service(service=svc)
    advance(sim, 30)
    with pytest.raises(exceptions.ServiceUnavailable):
        op.result(timeout=30)


def test_app_503_fault(sim):
    add_fault(sim, kind="app_503", api="app", resource="/auth/health", count=3)
    statuses = [raw(sim, "GET", "/auth/health")[0] for _ in range(3)]
    assert statuses == [503, 503, 503]
    assert sim.admin("GET", "/_sim/faults")["faults"][0]["fired"] == 3
    status, body = raw(sim, "POST", "/_sim/faults", {"kind": "nonsense"})
    assert status == 400


@pytest.mark.parametrize("kind", ["operation_error", "operation_hang"])
def test_run_patch_is_logged_even_when_a_fault_dooms_its_rollout(sim, kind):
    """The exception to "nothing is logged for a doomed operation": as on real Cloud Run,
    the spec and generation change when the PATCH is accepted; the rollout is only status."""
    add_fault(sim, kind=kind, api="run", method="PATCH")
    services = run_v2.ServicesClient(**gapic_options(sim))
    svc = services.get_service(name=BACKEND)
    svc.labels["team"] = "platform"
    services.update_service(service=svc)
    advance(sim, 60)
    after = services.get_service(name=BACKEND)
    assert after.labels["team"] == "platform" and after.generation == 3
    if kind == "operation_error":
        assert after.terminal_condition.state == run_v2.Condition.State.CONDITION_FAILED
    else:
        assert after.reconciling and after.observed_generation == 2
    logged = mutations(sim)
    assert [(m["api"], m["method"], m["resource"]) for m in logged] == [("run", "PATCH", BACKEND)]
    assert logged[0]["after"]["labels"]["team"] == "platform" and logged[0]["after"]["generation"] == "3"


def test_websocket_http_fault_does_not_spend_an_app_503_fault(sim):
    add_fault(sim, kind="http", api="app", resource="/ws", status=502)
    add_fault(sim, kind="app_503", api="app", resource="/ws")
    assert ws_session(sim)[0] == {"type": "error", "code": 502, "error": "Injected fault: HTTP 502"}
    http, app = sim.admin("GET", "/_sim/faults")["faults"]
    assert (http["fired"], app["fired"], app["remaining"]) == (1, 0, 1)
    answer = ws_session(sim)[0]  # now the app_503 fault answers
    assert (answer["type"], answer["code"]) == ("error", 503)
    assert [f["fired"] for f in sim.admin("GET", "/_sim/faults")["faults"]] == [1, 1]
