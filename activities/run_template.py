"""The Cloud Run revision-template knobs ``deploy_revision`` sets, read and written as
the API's JSON (camelCase): env, resources, scaling, timeout, startup probe, VPC access.

``config_view`` reads them with Cloud Run's defaults filled in, ``is_desired`` says
whether a template already has what a step asks for (a repeat is then a no-op), and
``apply_params`` writes them into a copy of a template.
"""

from __future__ import annotations

import copy
from typing import Any

from activities.clients import short

from runbook.activity_io import DeployRevisionParams, StartupProbe

DEFAULT_MAX_INSTANCES = 100
DEFAULT_TIMEOUT_S = 300
# Cloud Run's container port when the container declares none (it sets PORT=8080).
DEFAULT_PORT = 8080
# run_v2 VpcAccess.egress: the REST transport may hand back the enum's number.
_EGRESS = {1: "ALL_TRAFFIC", 2: "PRIVATE_RANGES_ONLY", "1": "ALL_TRAFFIC",
           "2": "PRIVATE_RANGES_ONLY", "ALL_TRAFFIC": "ALL_TRAFFIC",
           "PRIVATE_RANGES_ONLY": "PRIVATE_RANGES_ONLY"}
# run_v2 Probe field defaults when the probe is set but a field is not: timeout 1 s,
# period 10 s, failure threshold 3, no initial delay (run_v2 Probe reference).
_PROBE_DEFAULTS = {"initialDelaySeconds": 0, "timeoutSeconds": 1, "periodSeconds": 10,
                   "failureThreshold": 3}


def _container(tpl: dict[str, Any]) -> dict[str, Any]:
    containers = tpl.setdefault("containers", [{}])
    return containers[0]


def container_port(c: dict[str, Any]) -> int:
    ports = c.get("ports") or [{}]
    return int(ports[0].get("containerPort") or DEFAULT_PORT)


def probe_of(c: dict[str, Any]) -> StartupProbe | None:
    """A container's startup probe, or None when it sets none (Cloud Run's default)."""
    sp = c.get("startupProbe")
    if not sp:
        return None
    http, tcp = sp.get("httpGet"), sp.get("tcpSocket")
    num = {k: int(sp.get(k, d)) for k, d in _PROBE_DEFAULTS.items()}
    return StartupProbe(
        # httpGet.path defaults to "/"; a TCP (or gRPC) probe has no path.
        path=(http.get("path") or "/") if http is not None else None,
        port=int((http or tcp or {}).get("port") or 0) or None,
        initial_delay_s=num["initialDelaySeconds"], period_s=num["periodSeconds"],
        timeout_s=num["timeoutSeconds"], failure_threshold=num["failureThreshold"])


def _probe_key(probe: StartupProbe, port: int) -> dict[str, Any]:
    """A probe with its port resolved: ``port`` None means the container's port."""
    return probe.model_dump() | {"port": probe.port or port}


def probe_body(probe: StartupProbe, port: int) -> dict[str, Any]:
    body: dict[str, Any] = {"initialDelaySeconds": probe.initial_delay_s,
                            "timeoutSeconds": probe.timeout_s,
                            "periodSeconds": probe.period_s,
                            "failureThreshold": probe.failure_threshold}
    target = probe.port or port
    if probe.path is None:
        body["tcpSocket"] = {"port": target}
    else:
        body["httpGet"] = {"path": probe.path, "port": target}
    return body


def egress_name(value: Any, has_connector: bool) -> str:
    """``ALL_TRAFFIC`` | ``PRIVATE_RANGES_ONLY`` ("" without VPC access). Unset egress with
    a connector is Cloud Run's default, PRIVATE_RANGES_ONLY."""
    name = _EGRESS.get(value, "") if value not in (None, "", 0) else ""
    if not name and has_connector:
        return "PRIVATE_RANGES_ONLY"
    return name


def config_view(tpl: dict[str, Any]) -> dict[str, Any]:
    """The knobs deploy_revision sets, read from a template (with Cloud Run defaults)."""
    c = (tpl.get("containers") or [{}])[0]
    limits = c.get("resources", {}).get("limits", {})
    scaling = tpl.get("scaling", {})
    timeout = str(tpl.get("timeout", f"{DEFAULT_TIMEOUT_S}s"))
    vpc = tpl.get("vpcAccess") or {}
    connector = short(str(vpc.get("connector", "")))
    return {
        "env": {e["name"]: e.get("value", "") for e in c.get("env", [])
                if "name" in e and "valueSource" not in e},  # secret refs are not values
        "cpu": limits.get("cpu", ""),
        "memory": limits.get("memory", ""),
        "min_instances": int(scaling.get("minInstanceCount", 0)),
        "max_instances": int(scaling.get("maxInstanceCount", DEFAULT_MAX_INSTANCES)),
        "timeout_s": int(float(timeout.rstrip("s"))),
        "vpc_connector": connector,
        "vpc_connector_name": str(vpc.get("connector", "")),
        "vpc_egress": egress_name(vpc.get("egress"), bool(connector)),
        "startup_probe": probe_of(c),
        "container_port": container_port(c),
    }


def connector_ref(connector: str, project: str, region: str) -> str:
    """A connector's full name: the API stores full names; a short one is in the service's
    own project and region."""
    if not connector or "/" in connector:
        return connector
    return f"projects/{project}/locations/{region}/connectors/{connector}"


def _wanted(p: DeployRevisionParams) -> dict[str, Any]:
    fields = ("cpu", "memory", "min_instances", "max_instances", "timeout_s")
    out = {f: getattr(p, f) for f in fields if getattr(p, f) is not None}
    if p.vpc_egress is not None:
        out["vpc_egress"] = p.vpc_egress
    return out


def is_desired(tpl: dict[str, Any], p: DeployRevisionParams) -> bool:
    view = config_view(tpl)
    if any(view["env"].get(k) != v for k, v in p.env.items()):
        return False
    if p.startup_probe is not None:
        current = view["startup_probe"]
        port = view["container_port"]
        if current is None or _probe_key(current, port) != _probe_key(p.startup_probe, port):
            return False
    if p.vpc_connector is not None and \
            connector_ref(view["vpc_connector_name"], p.project, p.region) != \
            connector_ref(p.vpc_connector, p.project, p.region):
        return False
    return all(view[f] == v for f, v in _wanted(p).items())


def apply_params(tpl: dict[str, Any], p: DeployRevisionParams) -> dict[str, Any]:
    """A copy of ``tpl`` with the requested env, resources, scaling, timeout, startup
    probe and VPC access."""
    tpl = copy.deepcopy(tpl)
    c = _container(tpl)
    env = c.setdefault("env", [])
    for key, value in p.env.items():
        entry = next((e for e in env if e.get("name") == key), None)
        if entry is None:
            env.append({"name": key, "value": value})
        else:
            entry.pop("valueSource", None)  # a plain value replaces a secret reference
            entry["value"] = value
    if p.cpu is not None or p.memory is not None:
        if "resources" not in c:
            # A resources block without cpuIdle would switch CPU to always-allocated
            # (GCP_FACTS §1); keep Cloud Run's default of request-time CPU.
            c["resources"] = {"cpuIdle": True}
        limits = c["resources"].setdefault("limits", {})
        if p.cpu is not None:
            limits["cpu"] = p.cpu
        if p.memory is not None:
            limits["memory"] = p.memory
    if p.min_instances is not None or p.max_instances is not None:
        scaling = tpl.setdefault("scaling", {})
        if p.min_instances is not None:
            scaling["minInstanceCount"] = p.min_instances
        if p.max_instances is not None:
            scaling["maxInstanceCount"] = p.max_instances
    if p.timeout_s is not None:
        tpl["timeout"] = f"{p.timeout_s}s"
    if p.startup_probe is not None:
        # The whole probe is replaced: a leftover httpGet beside a new tcpSocket is invalid.
        c["startupProbe"] = probe_body(p.startup_probe, container_port(c))
    if p.vpc_connector is not None or p.vpc_egress is not None:
        vpc = tpl.setdefault("vpcAccess", {})
        if p.vpc_connector:
            # The full name: a short one is resolved by gcloud, not by the API.
            vpc["connector"] = connector_ref(p.vpc_connector, p.project, p.region)
        elif p.vpc_connector == "":
            vpc.pop("connector", None)
        if p.vpc_egress is not None:
            vpc["egress"] = p.vpc_egress
    return tpl
