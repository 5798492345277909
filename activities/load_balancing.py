"""Compute v1 load-balancer topology: what fronts each backend service, and the target
HTTPS proxy's certificate list.

The chain is forwarding rule (IP) -> target HTTPS proxy (certificates) -> URL map ->
backend service -> backend groups. What the groups are decides which phase-2 steps can
apply at all: behind a serverless NEG the load balancer sends no health checks and
refuses ``timeoutSec`` (GCP_FIDELITY A1), so the plan needs the kind, not a guess.

Everything here is a plain function of ``GcpClients`` run in a worker thread; each call
builds its own discovery client (httplib2 is not thread-safe).
"""

from __future__ import annotations

import re
from typing import Any


from activities.clients import GcpClients, execute, get_or_none, list_all, short
from runbook.activity_io import (
    BackendKind,
    BackendServiceState,
    HttpsProxyState,
    LoadBalancerState,
)

# compute.v1 discovery: BackendService.timeoutSec defaults to 30 when absent.
BACKEND_TIMEOUT_DEFAULT = 30

# A compute resource reference, as a selfLink (any host) or a relative name:
# projects/{p}/(global|regions/{r}|zones/{z})/{collection}/{name}
_REF = re.compile(r"projects/([^/]+)/(?:global|regions/([^/]+)|zones/([^/]+))/([^/]+)/([^/?#]+)")


def parse_ref(url: str) -> dict[str, str] | None:
    """project, region, zone, collection, name of a compute reference, or None."""
    m = _REF.search(url or "")
    if m is None:
        return None
    project, region, zone, collection, name = m.groups()
    return {"project": project, "region": region or "", "zone": zone or "",
            "collection": collection, "name": name}


def ref_key(url: str) -> str:
    """A reference without its host (``projects/...``), so selfLinks from different
    endpoints (googleapis.com, a simulator) compare equal."""
    i = (url or "").find("projects/")
    return url[i:] if i >= 0 else url


def _api(clients: GcpClients) -> Any:
    return clients.discovery("compute")


# -- backend services and their groups ------------------------------------------------


def group_kind(clients: GcpClients, group: str) -> tuple[BackendKind, str]:
    """(kind, Cloud Run service short name or "") of one backend group URL."""
    ref = parse_ref(group)
    if ref is None:
        return "OTHER", ""
    if ref["collection"] == "instanceGroups":
        return "INSTANCE_GROUP", ""
    if ref["collection"] != "networkEndpointGroups":
        return "OTHER", ""
    # Serverless NEGs are regional; GCE_VM_IP_PORT NEGs are zonal. Both are read, since
    # the URL alone does not say what the NEG's endpoints are.
    api = _api(clients)
    if ref["region"]:
        neg = execute(api.regionNetworkEndpointGroups().get(
            project=ref["project"], region=ref["region"], networkEndpointGroup=ref["name"]))
    elif ref["zone"]:
        neg = execute(api.networkEndpointGroups().get(
            project=ref["project"], zone=ref["zone"], networkEndpointGroup=ref["name"]))
    else:
        return "OTHER", ""  # global NEGs are internet (FQDN/IP) endpoints
    kind = neg.get("networkEndpointType", "")
    if kind == "SERVERLESS":
        return "SERVERLESS", str((neg.get("cloudRun") or {}).get("service", ""))
    if kind == "GCE_VM_IP_PORT":
        return "ZONAL_NEG", ""
    return "OTHER", ""


def read_backend_service(clients: GcpClients, project: str,
                         name: str) -> BackendServiceState | None:
    """A backend service with what serves it; None when it does not exist."""
    bs = get_or_none(_api(clients).backendServices().get(project=project, backendService=name))
    if bs is None:
        return None
    groups = [b["group"] for b in bs.get("backends", []) if b.get("group")]
    kinds: list[BackendKind] = []
    services: list[str] = []
    for group in groups:
        kind, service = group_kind(clients, group)
        kinds.append(kind)
        if service and service not in services:
            services.append(service)
    # One kind when all backends agree; a mix (or no backend at all) is OTHER, so no step
    # assumes what it does not know.
    backend_kind: BackendKind = "OTHER"
    if kinds and len(set(kinds)) == 1:
        backend_kind = kinds[0]
    return BackendServiceState(
        name=name, timeout_s=int(bs.get("timeoutSec", BACKEND_TIMEOUT_DEFAULT)),
        backend_kind=backend_kind, cloud_run_services=services,
        health_checks=[short(h) for h in bs.get("healthChecks", [])], groups=groups)


# -- URL maps, proxies, forwarding rules ------------------------------------------------


def url_map_services(url_map: dict[str, Any]) -> list[str]:
    """Short names of the backend services a URL map routes to (default service, path
    matchers' defaults, path rules and route rules), in order of appearance."""
    links: list[str] = []

    def add(link: Any) -> None:
        if isinstance(link, str) and (parse_ref(link) or {}).get("collection") == \
                "backendServices" and link not in links:
            links.append(link)

    def add_action(action: dict[str, Any] | None) -> None:
        for w in (action or {}).get("weightedBackendServices", []):
            add(w.get("backendService"))

    add(url_map.get("defaultService"))
    add_action(url_map.get("defaultRouteAction"))
    for pm in url_map.get("pathMatchers", []):
        add(pm.get("defaultService"))
        add_action(pm.get("defaultRouteAction"))
        for rule in pm.get("pathRules", []) + pm.get("routeRules", []):
            add(rule.get("service"))
            add_action(rule.get("routeAction"))
    return [short(link) for link in links]


def set_proxy_certificates(clients: GcpClients, project: str, name: str, links: list[str],
                           request_id: str) -> dict[str, Any]:
    """``setSslCertificates`` replaces the proxy's whole list; returns the global operation.
    (compute.v1 puts this method at projects/{p}/targetHttpsProxies/..., no "global/".)"""
    return execute(_api(clients).targetHttpsProxies().setSslCertificates(
        project=project, targetHttpsProxy=name, body={"sslCertificates": list(links)},
        requestId=request_id))


def read_topology(clients: GcpClients, project: str, https_proxy: str | None,
                  ) -> tuple[list[LoadBalancerState], HttpsProxyState | None]:
    """Every global forwarding rule that targets a target HTTPS proxy, followed to its URL
    map; and the state of ``https_proxy`` (None when not asked for)."""
    api = _api(clients)
    rules = list_all(api.globalForwardingRules(),
                     api.globalForwardingRules().list(project=project), "items")
    proxies = {p["name"]: p for p in list_all(
        api.targetHttpsProxies(), api.targetHttpsProxies().list(project=project), "items")}
    url_maps = {u["name"]: u for u in list_all(
        api.urlMaps(), api.urlMaps().list(project=project), "items")}
    lbs: list[LoadBalancerState] = []
    for rule in rules:
        target = parse_ref(rule.get("target", ""))
        if target is None or target["collection"] != "targetHttpsProxies":
            continue  # HTTP-only, TCP/SSL proxies, ...: no certificate, not our concern
        proxy = proxies.get(target["name"], {})
        um = url_maps.get(short(proxy.get("urlMap", "")), {})
        lbs.append(LoadBalancerState(
            forwarding_rule=rule["name"], ip_address=rule.get("IPAddress", ""),
            target_proxy=target["name"],
            certificates=[short(c) for c in proxy.get("sslCertificates", [])],
            url_map=short(proxy.get("urlMap", "")), backend_services=url_map_services(um)))
    state = None
    if https_proxy:
        proxy = proxies.get(https_proxy)
        fronting = [lb for lb in lbs if lb.target_proxy == https_proxy]
        state = HttpsProxyState(
            name=https_proxy, exists=proxy is not None,
            certificates=[short(c) for c in (proxy or {}).get("sslCertificates", [])],
            url_map=short((proxy or {}).get("urlMap", "")),
            forwarding_rules=[lb.forwarding_rule for lb in fronting],
            ip_addresses=[lb.ip_address for lb in fronting])
    return lbs, state
