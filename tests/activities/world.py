"""Names of the simulator's default world (RUNBOOK.md's broken staging) and helpers."""

from __future__ import annotations

from typing import Any

from runbook.activity_io import CompensationInput, StepOutcome

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
