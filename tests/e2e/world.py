"""The configuration an SRE cares about, extracted from the simulator's whole world.

Output-only fields (etags, generations, timestamps, revision bookkeeping) change with any
write and with a rollback; these are the settings a rollback must restore exactly.

For Cloud Run that is what *serves*: the revisions traffic reaches and their settings.
Cloud Run's rollback routes traffic back to the previous revisions (GCP_FIDELITY A10)
and leaves the service's template at the newer configuration, so the template itself is
not part of what a rollback restores.
"""

from __future__ import annotations

from typing import Any

BACKEND = "projects/netra-staging/locations/us-central1/services/netra-backend-staging"
AUTH = "projects/netra-staging/locations/us-central1/services/auth-staging"
CONNECTOR = "projects/netra-staging/locations/us-central1/connectors/staging-connector"


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueSource")) for e in container.get("env", [])}


def _settings(t: dict[str, Any]) -> dict[str, Any]:
    return {
        "env": [_env(c) for c in t["containers"]],
        "limits": [c.get("resources", {}).get("limits") for c in t["containers"]],
        "scaling": t.get("scaling"), "timeout": t.get("timeout"),
        "vpcAccess": t.get("vpcAccess"),
        "startupProbe": [c.get("startupProbe") for c in t["containers"]],
    }


def serving(state: dict[str, Any], service: str) -> dict[str, int]:
    """Revision short name -> percent of traffic, as Cloud Run resolved it."""
    svc = state["run"][service]
    return {x["revision"]: x.get("percent", 0) for x in svc.get("trafficStatuses", [])
            if x.get("percent", 0) > 0}


def revisions(state: dict[str, Any], service: str) -> list[str]:
    return sorted(k for k in state["run"] if k.startswith(service + "/revisions/"))


def config(state: dict[str, Any], *, include_connector: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, r in state["run"].items():
        if "/revisions/" in name:
            continue
        out[name] = {rev: {"percent": pct, **_settings(state["run"][f"{name}/revisions/{rev}"])}
                     for rev, pct in serving(state, name).items()}
    if include_connector:
        for name, c in state["vpcaccess"].items():
            out[name] = {k: c.get(k) for k in ("machineType", "minInstances", "maxInstances", "state")}
    for name, i in state["sqladmin"].items():
        out[name] = {"tier": i["settings"]["tier"], "state": i.get("state"),
                     "flags": sorted((f["name"], f["value"]) for f in i["settings"].get("databaseFlags", []))}
    for name, c in state["compute"].items():
        if "/healthChecks/" in name:
            out[name] = {k: c.get(k) for k in ("checkIntervalSec", "timeoutSec",
                                               "healthyThreshold", "unhealthyThreshold")}
        elif "/backendServices/" in name:
            out[name] = {"timeoutSec": c.get("timeoutSec")}
        elif "/sslCertificates/" in name:
            out[name] = {"exists": True}
        elif "/targetHttpsProxies/" in name:
            out[name] = {"sslCertificates": c.get("sslCertificates")}
    for name, p in state["monitoring"].items():
        if "/alertPolicies/" in name:
            out[name] = {"displayName": p.get("displayName")}
    return out
