"""Names of the simulator's default world (RUNBOOK.md's broken staging) and helpers."""

from __future__ import annotations

import asyncio
from typing import Any

from activities.cloud_sql import CloudSqlActivities
from activities.vpc_access import VpcAccessActivities
from runbook.activity_io import (
    CompensationInput,
    ExpandSqlParams,
    ScaleConnectorParams,
    StepOutcome,
)

from .conftest import Runner

P = "netra-staging"
R = "us-central1"
CONNECTOR = "staging-connector"
CONNECTOR_NAME = f"projects/{P}/locations/{R}/connectors/{CONNECTOR}"
SQL = "netra-staging-db"
SQL_KEY = f"projects/{P}/instances/{SQL}"
BACKEND = "netra-backend-staging"
BACKEND_NAME = f"projects/{P}/locations/{R}/services/{BACKEND}"
HC = "staging-backend-health-check"
HC_KEY = f"projects/{P}/global/healthChecks/{HC}"
BS = "staging-backend-service"
BS_KEY = f"projects/{P}/global/backendServices/{BS}"
CERT = "staging-netrasystems-ai-cert"
CERT_KEY = f"projects/{P}/global/sslCertificates/{CERT}"
DOMAINS = ["staging.netrasystems.ai", "api-staging.netrasystems.ai"]


def compensation(step_id: str, params: Any, outcome: StepOutcome) -> CompensationInput:
    dumped = params.model_dump() if hasattr(params, "model_dump") else dict(params)
    return CompensationInput(step_id=step_id, params=dumped, outcome=outcome)


def resource(state: dict[str, Any], api: str, key: str) -> dict[str, Any] | None:
    """A resource from ``/_sim/state`` without the simulator's private bookkeeping."""
    res = state[api].get(key)
    return None if res is None else {k: v for k, v in res.items() if k != "_sim"}

# The load balancer in front of both services (forwarding rule -> proxy -> URL map).
PROXY = "staging-https-proxy"
PROXY_KEY = f"projects/{P}/global/targetHttpsProxies/{PROXY}"
LEGACY_CERT = "staging-legacy-cert"
LB_IP = "34.120.10.20"
AUTH_BS = "staging-auth-service"
REDIS = "staging-redis"


def cert_names(state: dict[str, Any], proxy_key: str = PROXY_KEY) -> list[str]:
    """Short names of the certificates a target HTTPS proxy serves, in order."""
    return [c.rsplit("/", 1)[-1] for c in state["compute"][proxy_key]["sslCertificates"]]


# The infrastructure half of the remediation: connector scaled, Cloud SQL on a larger tier
# (max_connections left at the tier default, 400).
SCALE_CONNECTOR = ScaleConnectorParams(project=P, region=R, connector=CONNECTOR,
                                       machine_type="e2-standard-4", min_instances=3,
                                       max_instances=10)
EXPAND_SQL_TIER = ExpandSqlParams(project=P, instance=SQL, tier="db-custom-2-7680", flags={})


async def remediate_infrastructure(clients: Any) -> None:
    """Scale the connector and expand Cloud SQL with the activities (both waited for).

    While the connector overflows or Cloud SQL refuses connections the backend needs
    300 + 420 s to start, more than the longest startup probe allows (480 s); afterwards
    it starts in 300 s. Use before deploying a backend revision that must become ready."""
    scaled, expanded = await asyncio.gather(
        Runner(activity_id="infra-connector")(VpcAccessActivities(clients).scale_connector,
                                              SCALE_CONNECTOR),
        Runner(activity_id="infra-sql")(CloudSqlActivities(clients).expand_sql, EXPAND_SQL_TIER))
    assert scaled.after["machineType"] == "e2-standard-4"
    assert expanded.after["tier"] == "db-custom-2-7680"


def quick_backend_start(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the backend starting in 30 s whatever the outage (for tests that
    deploy a backend revision but are not about start-up times)."""
    route = state["app"]["routes"]["backend"]
    route["startup_seconds"] = 30
    route["startup_saturated_extra_seconds"] = 0
    return state
