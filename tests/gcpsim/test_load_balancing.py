"""The load balancer in front of Cloud Run (GCP_FIDELITY A1), Memorystore (B1), DNS and the
instance-group world, through the real discovery clients."""
from __future__ import annotations

import pytest
from gcpsim_helpers import LB_IP, LINK, PROJECT, REDIS, REGION, discovery, mutations, raw, wait_op
from googleapiclient.errors import HttpError

G = f"projects/{PROJECT}/global"
PROXY, RULE, URL_MAP = "staging-https-proxy", "staging-https-rule", "staging-url-map"
BS, AUTH_BS = "staging-backend-service", "staging-auth-service"
NEG = f"{LINK}projects/{PROJECT}/regions/{REGION}/networkEndpointGroups/netra-backend-staging-neg"
LEGACY = f"{LINK}{G}/sslCertificates/staging-legacy-cert"


def test_topology_from_forwarding_rule_to_serverless_neg(sim, compute):
    rule = compute.globalForwardingRules().get(project=PROJECT, forwardingRule=RULE).execute()
    assert (rule["IPAddress"], rule["IPProtocol"], rule["portRange"], rule["loadBalancingScheme"]) == \
        (LB_IP, "TCP", "443-443", "EXTERNAL_MANAGED")
    assert rule["target"] == f"{LINK}{G}/targetHttpsProxies/{PROXY}"
    assert [r["name"] for r in compute.globalForwardingRules().list(project=PROJECT).execute()["items"]] == [RULE]

    proxy = compute.targetHttpsProxies().get(project=PROJECT, targetHttpsProxy=PROXY).execute()
    assert proxy["urlMap"] == f"{LINK}{G}/urlMaps/{URL_MAP}" and proxy["sslCertificates"] == [LEGACY]
    assert proxy["fingerprint"]
    assert [p["name"] for p in compute.targetHttpsProxies().list(project=PROJECT).execute()["items"]] == [PROXY]
    legacy = compute.sslCertificates().get(project=PROJECT, sslCertificate="staging-legacy-cert").execute()
    assert legacy["type"] == "SELF_MANAGED" and legacy["subjectAlternativeNames"] == ["legacy.netrasystems.ai"]

    url_map = compute.urlMaps().get(project=PROJECT, urlMap=URL_MAP).execute()
    assert url_map["defaultService"] == f"{LINK}{G}/backendServices/{BS}"
    (matcher,) = url_map["pathMatchers"]
    assert matcher["pathRules"] == [{"paths": ["/auth/*"], "service": f"{LINK}{G}/backendServices/{AUTH_BS}"}]
    assert len(compute.urlMaps().list(project=PROJECT).execute()["items"]) == 1

    bs = compute.backendServices().get(project=PROJECT, backendService=BS).execute()
    assert bs["backends"] == [{"group": NEG}]
    assert "healthChecks" not in bs and "timeoutSec" not in bs
    assert (bs["protocol"], bs["loadBalancingScheme"]) == ("HTTPS", "EXTERNAL_MANAGED")

    neg = compute.regionNetworkEndpointGroups().get(project=PROJECT, region=REGION,
                                                    networkEndpointGroup="netra-backend-staging-neg").execute()
    assert neg["networkEndpointType"] == "SERVERLESS" and neg["cloudRun"] == {"service": "netra-backend-staging"}
    assert neg["selfLink"] == NEG and neg["region"] == f"{LINK}projects/{PROJECT}/regions/{REGION}"
    negs = compute.regionNetworkEndpointGroups().list(project=PROJECT, region=REGION).execute()["items"]
    assert {n["cloudRun"]["service"] for n in negs} == {"netra-backend-staging", "auth-staging"}
    with pytest.raises(HttpError) as err:
        compute.regionNetworkEndpointGroups().get(project=PROJECT, region=REGION,
                                                  networkEndpointGroup="nope").execute()
    assert err.value.status_code == 404


def test_serverless_backend_service_refuses_timeout_and_health_checks(sim, compute):
    """A1: refused synchronously with Google's 400; nothing changes, nothing is logged."""
    bs = compute.backendServices().get(project=PROJECT, backendService=BS).execute()
    with pytest.raises(HttpError) as err:
        compute.backendServices().patch(project=PROJECT, backendService=BS,
                                        body={"timeoutSec": 600, "fingerprint": bs["fingerprint"]}).execute()
    assert err.value.status_code == 400
    assert err.value.reason == ("Invalid value for field 'resource.timeoutSec': '600'. Timeout sec is not supported "
                                "for a backend service with Serverless network endpoint groups.")
    hc_link = f"{LINK}{G}/healthChecks/staging-backend-health-check"
    with pytest.raises(HttpError) as err:
        compute.backendServices().patch(project=PROJECT, backendService=BS,
                                        body={"healthChecks": [hc_link], "fingerprint": bs["fingerprint"]}).execute()
    assert err.value.status_code == 400 and err.value.reason == (
        "Invalid value for field 'resource.healthChecks': ''. A backend service cannot have a healthcheck with "
        "Serverless network endpoint group backends.")
    assert compute.backendServices().get(project=PROJECT, backendService=BS).execute() == bs
    assert mutations(sim) == []
    # The health checks still exist and can be patched; they are attached to nothing.
    op = compute.healthChecks().patch(project=PROJECT, healthCheck="staging-backend-health-check",
                                      body={"checkIntervalSec": 30, "timeoutSec": 30}).execute()
    assert wait_op(compute, op)["status"] == "DONE"
    # ...and they change nothing for the Cloud Run app behind a serverless NEG.
    assert sim.admin("GET", "/_sim/app")["routes"]["backend"]["health_check"] is None


def test_set_ssl_certificates(sim, compute):
    op = compute.sslCertificates().insert(project=PROJECT, body={
        "name": "new-cert", "type": "MANAGED", "managed": {"domains": ["staging.netrasystems.ai"]}}).execute()
    wait_op(compute, op)
    new = f"{LINK}{G}/sslCertificates/new-cert"
    before = mutations(sim)[-1]["seq"]
    rid = "5a0c1b7e-7c1e-4a53-9d1a-5b0c3d2e1f01"
    req = compute.targetHttpsProxies().setSslCertificates(
        project=PROJECT, targetHttpsProxy=PROXY, requestId=rid,
        body={"sslCertificates": [LEGACY, f"projects/{PROJECT}/global/sslCertificates/new-cert"]})
    assert f"/projects/{PROJECT}/targetHttpsProxies/{PROXY}/setSslCertificates" in req.uri
    op1, op2 = req.execute(), req.execute()
    assert op1["name"] == op2["name"] and op1["operationType"] == "setSslCertificates"
    assert op1["targetLink"] == f"{LINK}{G}/targetHttpsProxies/{PROXY}"
    assert wait_op(compute, op1)["status"] == "DONE"
    proxy = compute.targetHttpsProxies().get(project=PROJECT, targetHttpsProxy=PROXY).execute()
    assert proxy["sslCertificates"] == [LEGACY, new]
    logged = mutations(sim, since=before)
    assert [(m["method"], m["request_id"]) for m in logged] == [("POST", rid)]
    assert logged[0]["after"]["sslCertificates"] == [LEGACY, new]

    for body, status in (({"sslCertificates": [f"{LINK}{G}/sslCertificates/missing"]}, 404),
                         ({"sslCertificates": []}, 400),
                         ({"sslCertificates": [LEGACY] * 16}, 400)):
        with pytest.raises(HttpError) as err:
            compute.targetHttpsProxies().setSslCertificates(project=PROJECT, targetHttpsProxy=PROXY,
                                                            body=body).execute()
        assert err.value.status_code == status, body
    with pytest.raises(HttpError) as err:
        compute.targetHttpsProxies().setSslCertificates(project=PROJECT, targetHttpsProxy="nope",
                                                        body={"sslCertificates": [LEGACY]}).execute()
    assert err.value.status_code == 404
    assert len(mutations(sim, since=before)) == 1
    # The global spelling of the path works too.
    status, _ = raw(sim, "POST", f"/compute/v1/{G}/targetHttpsProxies/{PROXY}/setSslCertificates",
                    {"sslCertificates": [LEGACY]})
    assert status == 200


def test_redis_instance_and_dns(sim):
    redis = discovery(sim, "redis", "v1")
    name = REDIS
    inst = redis.projects().locations().instances().get(name=name).execute()
    assert (inst["host"], inst["port"], inst["state"], inst["connectMode"], inst["tier"]) == \
        ("10.30.0.4", 6379, "READY", "DIRECT_PEERING", "BASIC")
    assert inst["authorizedNetwork"] == f"projects/{PROJECT}/global/networks/staging-vpc"
    assert (inst["memorySizeGb"], inst["redisVersion"], inst["locationId"]) == (1, "REDIS_7_0", "us-central1-a")
    listed = redis.projects().locations().instances().list(parent=f"projects/{PROJECT}/locations/{REGION}").execute()
    assert [i["name"] for i in listed["instances"]] == [name]
    with pytest.raises(HttpError) as err:
        redis.projects().locations().instances().get(name=name.replace("staging-redis", "nope")).execute()
    assert err.value.status_code == 404 and "NOT_FOUND" in err.value.content.decode()
    state = sim.admin("GET", "/_sim/state")
    assert state["dns"]["staging.netrasystems.ai"] == LB_IP and name in state["redis"]
    # A fault can target the redis API.
    sim.admin("POST", "/_sim/faults", {"api": "redis", "kind": "http", "status": 503})
    with pytest.raises(HttpError) as err:
        redis.projects().locations().instances().get(name=name).execute()
    assert err.value.status_code == 503


def test_instance_group_world(sim, compute):
    assert sim.admin("POST", "/_sim/reset", {"world": "instance-group"}) == {"ok": True, "world": "instance-group"}
    bs = compute.backendServices().get(project=PROJECT, backendService=BS).execute()
    assert bs["backends"] == [{"group": f"{LINK}projects/{PROJECT}/regions/{REGION}/instanceGroups/staging-backend-ig",
                               "balancingMode": "UTILIZATION", "capacityScaler": 1}]
    assert bs["healthChecks"] == [f"{LINK}{G}/healthChecks/staging-backend-health-check"] and bs["timeoutSec"] == 30
    figures = sim.admin("GET", "/_sim/app")
    assert figures["routes"]["backend"]["serverless"] is False
    assert figures["routes"]["backend"]["websocket_limit_seconds"] == 30
    op = compute.backendServices().patch(project=PROJECT, backendService=BS,
                                         body={"timeoutSec": 600, "fingerprint": bs["fingerprint"]}).execute()
    wait_op(compute, op)
    assert sim.admin("GET", "/_sim/app")["routes"]["backend"]["websocket_limit_seconds"] == 300  # Run timeout
    assert figures["routes"]["backend"]["health_check"]["failing_share"] > 0  # 5 s probes, 8.7 s /health
    wait_op(compute, compute.healthChecks().patch(project=PROJECT, healthCheck="staging-backend-health-check",
                                                body={"checkIntervalSec": 30, "timeoutSec": 30}).execute())
    route = sim.admin("GET", "/_sim/app")["routes"]["backend"]
    assert route["health_check"]["failing_share"] == 0 and route["rate_503"] < figures["routes"]["backend"]["rate_503"]
    assert sim.admin("POST", "/_sim/reset", {"world": "serverless"})["world"] == "serverless"
    assert sim.admin("GET", "/_sim/app")["routes"]["backend"]["serverless"] is True
    for body in ({"world": "nope"}, {"wrld": "serverless"}):
        status, err = raw(sim, "POST", "/_sim/reset", body)
        assert status == 400 and err["error"]["details"][0]["metadata"]["field"] in ("world", "wrld")


def test_partial_health_check_link_stays_effective(sim, compute):
    """A partial URL (as Compute accepts) names the health check the app model then uses;
    it is stored as the full selfLink. A link whose last segment merely names an existing
    health check in another collection is refused."""
    sim.admin("POST", "/_sim/reset", {"world": "instance-group"})
    hc_name = "staging-backend-health-check"
    bs = compute.backendServices().get(project=PROJECT, backendService=BS).execute()
    with pytest.raises(HttpError) as err:
        compute.backendServices().patch(project=PROJECT, backendService=BS, body={
            "healthChecks": [f"global/urlMaps/{hc_name}"], "fingerprint": bs["fingerprint"]}).execute()
    assert err.value.status_code == 400 and "healthChecks[0]" in err.value.reason
    op = compute.backendServices().patch(project=PROJECT, backendService=BS, body={
        "healthChecks": [f"global/healthChecks/{hc_name}"], "fingerprint": bs["fingerprint"]}).execute()
    assert wait_op(compute, op)["status"] == "DONE"
    after = compute.backendServices().get(project=PROJECT, backendService=BS).execute()
    assert after["healthChecks"] == [f"{LINK}{G}/healthChecks/{hc_name}"]
    route = sim.admin("GET", "/_sim/app")["routes"]["backend"]
    assert route["health_check"] is not None and route["health_check"]["name"] == hc_name
    assert route["health_check"]["failing_share"] > 0  # 5 s probes, slow /health: still flapping


def test_partial_neg_link_with_timeout_is_refused(sim, compute):
    """A1 holds whatever form the serverless NEG reference takes (here a regional partial URL)."""
    bs = compute.backendServices().get(project=PROJECT, backendService=BS).execute()
    group = f"regions/{REGION}/networkEndpointGroups/netra-backend-staging-neg"
    with pytest.raises(HttpError) as err:
        compute.backendServices().patch(project=PROJECT, backendService=BS, body={
            "backends": [{"group": group}], "timeoutSec": 600, "fingerprint": bs["fingerprint"]}).execute()
    assert err.value.status_code == 400
    assert err.value.reason == ("Invalid value for field 'resource.timeoutSec': '600'. Timeout sec is not supported "
                                "for a backend service with Serverless network endpoint groups.")
    assert compute.backendServices().get(project=PROJECT, backendService=BS).execute() == bs
    assert mutations(sim) == []
    # Without timeoutSec the same partial reference is accepted and stored as the full selfLink.
    wait_op(compute, compute.backendServices().patch(project=PROJECT, backendService=BS, body={
        "backends": [{"group": group}], "fingerprint": bs["fingerprint"]}).execute())
    assert compute.backendServices().get(project=PROJECT, backendService=BS).execute()["backends"] == [{"group": NEG}]
    assert sim.admin("GET", "/_sim/app")["routes"]["backend"]["serverless"] is True


def test_bare_certificate_name_is_stored_as_self_link(sim, compute):
    wait_op(compute, compute.targetHttpsProxies().setSslCertificates(
        project=PROJECT, targetHttpsProxy=PROXY, body={"sslCertificates": ["staging-legacy-cert"]}).execute())
    assert compute.targetHttpsProxies().get(project=PROJECT, targetHttpsProxy=PROXY).execute()[
        "sslCertificates"] == [LEGACY]


def test_zonal_neg_in_a_custom_world(sim, compute):
    state = sim.admin("GET", "/_sim/state")
    k = f"projects/{PROJECT}/zones/us-central1-a/networkEndpointGroups/vm-neg"
    state["compute"][k] = {"kind": "compute#networkEndpointGroup", "name": "vm-neg", "selfLink": LINK + k,
                           "networkEndpointType": "GCE_VM_IP_PORT", "defaultPort": 8080,
                           "zone": f"{LINK}projects/{PROJECT}/zones/us-central1-a"}
    sim.admin("POST", "/_sim/reset", state)
    neg = compute.networkEndpointGroups().get(project=PROJECT, zone="us-central1-a", networkEndpointGroup="vm-neg"
                                              ).execute()
    assert neg["networkEndpointType"] == "GCE_VM_IP_PORT"
    assert [n["name"] for n in compute.networkEndpointGroups().list(project=PROJECT, zone="us-central1-a"
                                                                    ).execute()["items"]] == ["vm-neg"]


@pytest.mark.parametrize("body", [{"sslCertificates": "staging-legacy-cert"}, {"sslCertificates": [5]},
                                  {"sslCertificates": [f"projects/{PROJECT}/regions/{REGION}/sslCertificates/x"]},
                                  {"sslCertificates": [LEGACY, LEGACY]}, {}])
def test_malformed_set_ssl_certificates_is_invalid_argument(sim, body):
    status, err = raw(sim, "POST", f"/compute/v1/projects/{PROJECT}/targetHttpsProxies/{PROXY}/setSslCertificates",
                      body)
    assert status == 400 and err["error"]["details"][0]["metadata"]["field"].startswith("sslCertificates")
    assert mutations(sim) == []


def test_malformed_reset_is_invalid_argument(sim):
    status, err = raw(sim, "POST", "/_sim/reset", {"world": 5})
    assert status == 400 and err["error"]["details"][0]["metadata"]["field"] == "world"
    status, err = raw(sim, "POST", "/_sim/reset", {"projects": [{"projectId": "p", "projectNumber": "1"}],
                                                   "dns": {"a.example.com": 5}})
    assert status == 400 and err["error"]["details"][0]["metadata"]["field"] == "dns"
