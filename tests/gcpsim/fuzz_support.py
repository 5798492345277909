"""Support for the gcpsim fuzz tests: an in-process simulator, the calls to corrupt, and
checks that a refusal is Google-shaped and left the world as it was."""
from __future__ import annotations

import json
from typing import Any

from gcpsim_helpers import BACKEND, CONNECTOR, LOC, PROJECT
from hypothesis import strategies as st
from starlette.testclient import TestClient

from gcpsim.app import create_app

COMPUTE = f"/compute/v1/projects/{PROJECT}/global"
CPU = "vpcaccess.googleapis.com/connector/cpu/utilizations"
CONDITION = {"displayName": "cpu", "conditionThreshold": {
    "filter": f'metric.type = "{CPU}" AND resource.type = "vpc_access_connector"', "duration": "60s",
    "comparison": "COMPARISON_GT", "thresholdValue": 0.8,
    "aggregations": [{"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_PERCENTILE_99"}]}}

# (method, path, a body the API would accept or nearly so). Each API enforces its discovery
# schema on these bodies: unknown names and wrong JSON types are refused.
BODY_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("PATCH", f"{COMPUTE}/healthChecks/staging-backend-health-check",
     {"checkIntervalSec": 10, "timeoutSec": 5, "httpHealthCheck": {"requestPath": "/health", "port": 8080},
      "logConfig": {"enable": True}}),
    ("POST", f"/v1/{LOC}/connectors?connectorId=fuzz-connector",
     {"network": "staging-vpc", "ipCidrRange": "10.9.0.0/28", "machineType": "e2-micro", "minInstances": 2,
      "maxInstances": 3}),
    ("PATCH", f"/v1/{CONNECTOR}?updateMask=minInstances,maxInstances",
     {"minInstances": 3, "maxInstances": 10}),
    ("POST", f"/v3/projects/{PROJECT}/alertPolicies",
     {"displayName": "connector cpu", "combiner": "OR", "conditions": [CONDITION], "enabled": True,
      "userLabels": {"team": "sre"}, "documentation": {"content": "runbook", "mimeType": "text/markdown"}}),
    ("POST", f"/v3/projects/{PROJECT}/metricDescriptors",
     {"type": "custom.googleapis.com/fuzz/latency", "metricKind": "GAUGE", "valueType": "DOUBLE",
      "labels": [{"key": "route", "valueType": "STRING"}]}),
    ("PATCH", f"/v1/projects/{PROJECT}/instances/netra-staging-db",
     {"settings": {"tier": "db-custom-2-7680", "databaseFlags": [{"name": "max_connections", "value": "400"}]}}),
    ("PATCH", f"/v2/{BACKEND}", {"labels": {"env": "staging"}, "template": {"timeout": "600s"}}),
    ("POST", f"{COMPUTE}/sslCertificates",
     {"name": "fuzz-cert", "type": "MANAGED", "managed": {"domains": ["fuzz.example.com"]}}),
    ("POST", f"/compute/v1/projects/{PROJECT}/targetHttpsProxies/staging-https-proxy/setSslCertificates",
     {"sslCertificates": [f"projects/{PROJECT}/global/sslCertificates/staging-cert"]}),
]

# Lists (paging parameters) and the timeSeries query (interval times) read query parameters.
LIST_PATHS = [f"/v2/{LOC}/services", f"/v1/{LOC}/connectors", f"/v1/projects/{PROJECT}/secrets",
              f"/v3/projects/{PROJECT}/alertPolicies", f"/v2/{BACKEND}/revisions",
              f"/v3/projects/{PROJECT}/metricDescriptors"]
SERIES = f"/v3/projects/{PROJECT}/timeSeries"
SERIES_FILTER = f'metric.type = "{CPU}"'

json_leaf = (st.none() | st.booleans() | st.integers(-2**70, 2**70) |
             st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3) |
                          st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


class InProcessSim:
    """One simulator app in this process; ``call`` never raises for a server error."""

    def __init__(self, data_dir) -> None:
        self.app = create_app(data_dir, speed=120.0)
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.store = self.app.state.sim.store
        self.calls = 0

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None):
        content = raw if raw is not None else (json.dumps(body) if body is not None else None)
        self.calls += 1
        return self.client.request(method, path, content=content, headers={"Content-Type": "application/json"})

    def world(self) -> dict[str, Any]:
        """Everything a refused call must leave unchanged."""
        clock = self.store.meta_get("clock") or {}
        return {"resources": self.store.all_resources(), "faults": self.store.faults(),
                "operations": self.store.ops_all(), "mutations": len(self.store.mutations()),
                "advanced": clock.get("advanced", 0.0), "projects": self.store.meta_get("world:projects"),
                "app": self.store.meta_get("world:app"), "dns": self.store.meta_get("world:dns")}


def assert_google_error(response, *, status: int | None = None) -> dict[str, Any]:
    """A Google-shaped refusal (4xx, never 5xx): ``{"error": {code, message, status, errors,
    details[ErrorInfo]}}`` with ``code`` equal to the HTTP status."""
    assert response.status_code < 500, response.text[:500]
    assert 400 <= response.status_code, f"accepted a malformed call: {response.status_code} {response.text[:300]}"
    if status is not None:
        assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == response.status_code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["status"], str) and error["status"].isupper()
    assert error["errors"][0]["reason"]
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    return error


def refused_without_change(sim: InProcessSim, method: str, path: str, body: Any = None, *,
                           raw: bytes | None = None, status: int | None = 400) -> dict[str, Any]:
    before = sim.world()
    error = assert_google_error(sim.call(method, path, body, raw), status=status)
    assert sim.world() == before, f"a refused {method} {path} changed the world"
    return error


def dict_paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths (keys and list indexes) of every object inside ``value``, itself included."""
    found = [path] if isinstance(value, dict) else []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found += dict_paths(v, path + (k,))
    return found


def leaf_paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every scalar inside ``value``."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaf_paths(v, path + (k,))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaf_paths(v, path + (i,))]
    return [path]


def at(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


def wrong_type_for(value: Any):
    """A JSON value of another type than ``value`` (never null: proto3 JSON reads null as
    the default, which is not malformed)."""
    def differs(candidate: Any) -> bool:
        if candidate is None:
            return False
        if isinstance(value, bool) or isinstance(candidate, bool):
            return type(candidate) is not type(value)
        if isinstance(value, (int, float)):  # "3" is a valid proto3 JSON integer
            return not isinstance(candidate, (int, float)) and not (
                isinstance(candidate, str) and candidate.strip().lstrip("-").isdigit())
        return type(candidate) is not type(value)
    return json_value.filter(differs)
