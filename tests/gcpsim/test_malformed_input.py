"""Malformed bodies and parameters are refused with Google's 400 INVALID_ARGUMENT naming the
field, never a 500: the orchestrator retries a 500 forever. Plain HTTP, because the real
clients cannot send most of these shapes."""
from __future__ import annotations

import pytest
from gcpsim_helpers import BACKEND, CONNECTOR, LOC, PROJECT, raw

SQL = f"/v1/projects/{PROJECT}/instances/netra-staging-db"
COMPUTE = f"/compute/v1/projects/{PROJECT}/global"


CURRENT = "<the backend service's current fingerprint>"


@pytest.mark.parametrize("method, path, body, field", [
    ("PATCH", SQL, {"settings": {"dataDiskSizeGb": "lots"}}, "settings.dataDiskSizeGb"),
    ("PATCH", SQL, {"settings": {"tier": ["db-custom-2-7680"]}}, "settings.tier"),
    ("PATCH", SQL, {"settings": {"databaseFlags": ["max_connections=300"]}}, "settings.databaseFlags[0]"),
    ("PATCH", SQL, {"settings": {"activationPolicy": ["ALWAYS"]}}, "settings.activationPolicy"),
    ("PATCH", f"{COMPUTE}/backendServices/staging-backend-service",
     {"connectionDraining": "30s", "fingerprint": CURRENT}, "connectionDraining"),
    ("PATCH", f"{COMPUTE}/healthChecks/staging-backend-health-check", {"type": ["HTTP"]}, "type"),
    ("POST", f"/v1/{LOC}/connectors?connectorId=c2",
     {"network": "staging-vpc", "ipCidrRange": "10.2.0.0/28", "subnet": "staging-subnet"}, "subnet"),
    ("POST", f"/v3/projects/{PROJECT}/alertPolicies",
     {"displayName": "x", "combiner": ["OR"], "conditions": [{"displayName": "c", "conditionAbsent": {
         "filter": "f", "duration": "60s"}}]}, "combiner"),
    ("GET", f"/v2/{BACKEND}/revisions?pageToken=-1", None, "pageToken"),
    ("GET", f"/v1/projects/{PROJECT}/secrets?pageSize=many", None, "pageSize"),
    ("POST", "/_sim/faults", {"kind": "http", "count": "lots"}, "count"),
])
def test_malformed_input_is_invalid_argument_naming_the_field(sim, method, path, body, field):
    if body and body.get("fingerprint") == CURRENT:  # only the field under test is wrong
        body = body | {"fingerprint": raw(sim, "GET", path)[1]["fingerprint"]}
    status, answer = raw(sim, method, path, body)
    assert status == 400, answer
    assert answer["error"]["status"] == "INVALID_ARGUMENT"
    assert answer["error"]["details"][0]["metadata"]["field"] == field


def test_run_wait_with_a_malformed_timeout(sim):
    _, svc = raw(sim, "GET", f"/v2/{BACKEND}")
    _, op = raw(sim, "PATCH", f"/v2/{BACKEND}", svc)  # an identical PATCH: a finished operation
    status, answer = raw(sim, "POST", f"/v2/{op['name']}:wait", {"timeout": "abc"})
    assert status == 400 and answer["error"]["details"][0]["metadata"]["field"] == "timeout"
    status, answer = raw(sim, "POST", f"/v2/{op['name']}:wait", {"timeout": "1.5s"})
    assert status == 200 and answer["done"] is True


def test_connector_patch_body_with_wrong_types(sim):
    status, answer = raw(sim, "PATCH", f"/v1/{CONNECTOR}?updateMask=minInstances,maxInstances",
                         {"minInstances": [3], "maxInstances": 10})
    assert status == 400 and answer["error"]["details"][0]["metadata"]["field"] == "minInstances"
