"""Compute v1 (global) through the discovery client with api_endpoint=.../compute/v1/."""
from __future__ import annotations

import pytest
from gcpsim_helpers import LB_IP, PROJECT, add_fault, advance, attach_certificates, mutations, wait_op
from googleapiclient.errors import HttpError

HC, BS, CERT = "staging-backend-health-check", "staging-backend-service", "staging-netrasystems-ai-cert"


def test_health_check_patch_and_limit(sim, compute):
    hc = compute.healthChecks().get(project=PROJECT, healthCheck=HC).execute()
    assert (hc["checkIntervalSec"], hc["timeoutSec"], hc["httpHealthCheck"]["requestPath"]) == (5, 5, "/health")
    with pytest.raises(HttpError) as err:
        compute.healthChecks().patch(project=PROJECT, healthCheck=HC,
                                     body={"checkIntervalSec": 30, "timeoutSec": 90}).execute()
    assert err.value.status_code == 400 and "timeoutSec" in err.value.reason
    op = compute.healthChecks().patch(project=PROJECT, healthCheck=HC, body={
        "checkIntervalSec": 30, "timeoutSec": 30, "unhealthyThreshold": 5, "healthyThreshold": 2}).execute()
    assert op["kind"] == "compute#operation" and op["operationType"] == "patch"
    assert wait_op(compute, op)["status"] == "DONE"
    got = compute.globalOperations().get(project=PROJECT, operation=op["name"]).execute()
    assert got["status"] == "DONE" and "error" not in got
    hc = compute.healthChecks().get(project=PROJECT, healthCheck=HC).execute()
    assert (hc["checkIntervalSec"], hc["timeoutSec"], hc["unhealthyThreshold"], hc["healthyThreshold"]) == (30, 30, 5, 2)
    with pytest.raises(HttpError) as err:
        compute.healthChecks().patch(project=PROJECT, healthCheck=HC,
                                     body={"tcpHealthCheck": {"port": 80}}).execute()
    assert err.value.status_code == 400 and "tcpHealthCheck" in err.value.reason
    assert len(mutations(sim)) == 1


def test_backend_service_fingerprint_and_request_id(sim, compute):
    sim.admin("POST", "/_sim/reset", {"world": "instance-group"})  # serverless ones refuse timeoutSec
    bs = compute.backendServices().get(project=PROJECT, backendService=BS).execute()
    assert bs["timeoutSec"] == 30 and bs["fingerprint"]
    with pytest.raises(HttpError) as err:
        compute.backendServices().patch(project=PROJECT, backendService=BS,
                                        body={"timeoutSec": 600, "fingerprint": "stale="}).execute()
    assert err.value.status_code == 412 and err.value.error_details[0]["reason"] == "conditionNotMet"
    rid = "0f6c1b7e-7c1e-4a53-9d1a-5b0c3d2e1f00"
    body = {"timeoutSec": 600, "fingerprint": bs["fingerprint"]}
    op1 = compute.backendServices().patch(project=PROJECT, backendService=BS, body=body, requestId=rid).execute()
    op2 = compute.backendServices().patch(project=PROJECT, backendService=BS, body=body, requestId=rid).execute()
    assert op1["name"] == op2["name"]
    after = compute.backendServices().get(project=PROJECT, backendService=BS).execute()
    assert after["timeoutSec"] == 600 and after["fingerprint"] != bs["fingerprint"]
    logged = mutations(sim)
    assert len(logged) == 1 and logged[0]["request_id"] == rid
    with pytest.raises(HttpError) as err:  # the old fingerprint is now stale
        compute.backendServices().patch(project=PROJECT, backendService=BS, body=body).execute()
    assert err.value.status_code == 412


def _status(compute, name=CERT):
    managed = compute.sslCertificates().get(project=PROJECT, sslCertificate=name).execute()["managed"]
    return managed["status"], managed["domainStatus"]


def test_managed_certificate_lifecycle(sim, compute):
    """A3: PROVISIONING until attached to a proxy whose forwarding-rule IP the domains
    resolve to; ACTIVE 600 s after that; an attached certificate cannot be deleted."""
    with pytest.raises(HttpError) as err:
        compute.sslCertificates().get(project=PROJECT, sslCertificate=CERT).execute()
    assert err.value.status_code == 404
    domains = ["staging.netrasystems.ai", "api-staging.netrasystems.ai"]
    op = compute.sslCertificates().insert(project=PROJECT, body={
        "name": CERT, "type": "MANAGED", "managed": {"domains": domains}}).execute()
    wait_op(compute, op)
    assert _status(compute)[0] == "PROVISIONING"
    listed = compute.sslCertificates().list(project=PROJECT, filter='name = "staging-netrasystems-ai-cert"').execute()
    assert [c["name"] for c in listed["items"]] == [CERT]
    with pytest.raises(HttpError) as err:
        compute.sslCertificates().insert(project=PROJECT, body={"name": CERT, "type": "MANAGED",
                                                                "managed": {"domains": domains}}).execute()
    assert err.value.status_code == 409
    advance(sim, 610)  # not attached: Google does not even start
    assert _status(compute) == ("PROVISIONING", {d: "PROVISIONING" for d in domains})
    attach_certificates(compute, "staging-legacy-cert", CERT)  # keep the certificate already attached
    advance(sim, 300)
    assert _status(compute)[0] == "PROVISIONING"
    advance(sim, 310)  # 600 s after it became eligible
    status, per_domain = _status(compute)
    assert status == "ACTIVE" and set(per_domain.values()) == {"ACTIVE"}
    with pytest.raises(HttpError) as err:
        compute.sslCertificates().delete(project=PROJECT, sslCertificate=CERT).execute()
    assert err.value.status_code == 400 and err.value.error_details[0]["reason"] == "resourceInUseByAnotherResource"
    attach_certificates(compute, "staging-legacy-cert")
    wait_op(compute, compute.sslCertificates().delete(project=PROJECT, sslCertificate=CERT).execute())
    assert [c["name"] for c in compute.sslCertificates().list(project=PROJECT).execute()["items"]] == \
        ["staging-legacy-cert"]
    assert [m["method"] for m in mutations(sim)] == ["POST", "POST", "POST", "DELETE"]


def test_managed_certificate_needs_dns_and_stops_when_detached(sim, compute):
    wait_op(compute, compute.sslCertificates().insert(project=PROJECT, body={
        "name": "www-cert", "type": "MANAGED",
        "managed": {"domains": ["staging.netrasystems.ai", "www.netrasystems.ai"]}}).execute())
    attach_certificates(compute, "staging-legacy-cert", "www-cert")
    advance(sim, 700)  # www does not resolve to the load balancer's IP
    assert _status(compute, "www-cert") == ("PROVISIONING", {"staging.netrasystems.ai": "PROVISIONING",
                                                             "www.netrasystems.ai": "FAILED_NOT_VISIBLE"})
    state = sim.admin("GET", "/_sim/state")  # a custom world where www resolves (and the cert is attached)
    state["dns"]["www.netrasystems.ai"] = LB_IP
    sim.admin("POST", "/_sim/reset", state)
    advance(sim, 300)
    assert _status(compute, "www-cert")[0] == "PROVISIONING"
    attach_certificates(compute, "staging-legacy-cert")  # detached before ACTIVE: provisioning stops
    attach_certificates(compute, "staging-legacy-cert", "www-cert")  # re-attached: the 600 s start again
    advance(sim, 400)
    assert _status(compute, "www-cert")[0] == "PROVISIONING"
    advance(sim, 210)
    assert _status(compute, "www-cert")[0] == "ACTIVE"


def test_operation_error_applies_nothing(sim, compute):
    add_fault(sim, kind="operation_error", api="compute", resource="healthChecks", code=13)
    op = compute.healthChecks().patch(project=PROJECT, healthCheck=HC, body={"timeoutSec": 4}).execute()
    done = wait_op(compute, op)
    assert done["status"] == "DONE" and done["error"]["errors"][0]["code"] == "INTERNAL_ERROR"
    assert done["httpErrorStatusCode"] == 500
    assert compute.healthChecks().get(project=PROJECT, healthCheck=HC).execute()["timeoutSec"] == 5
    assert mutations(sim) == []


def test_fingerprint_is_new_after_every_change_even_a_revert(sim, compute):
    sim.admin("POST", "/_sim/reset", {"world": "instance-group"})
    services = compute.backendServices()
    fingerprints = [services.get(project=PROJECT, backendService=BS).execute()["fingerprint"]]
    for timeout in (600, 30):  # 30 -> 600 -> 30: the content ends where it started
        body = {"timeoutSec": timeout, "fingerprint": fingerprints[-1]}
        wait_op(compute, services.patch(project=PROJECT, backendService=BS, body=body).execute())
        fingerprints.append(services.get(project=PROJECT, backendService=BS).execute()["fingerprint"])
    assert services.get(project=PROJECT, backendService=BS).execute()["timeoutSec"] == 30
    assert len(set(fingerprints)) == 3
    with pytest.raises(HttpError) as err:  # the first read is stale although the content matches it
        services.patch(project=PROJECT, backendService=BS,
                       body={"timeoutSec": 45, "fingerprint": fingerprints[0]}).execute()
    assert err.value.status_code == 412 and err.value.error_details[0]["reason"] == "conditionNotMet"
