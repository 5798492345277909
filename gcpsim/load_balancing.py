"""Compute v1 load-balancer topology: global forwarding rules, target HTTPS proxies (with
``setSslCertificates``), URL maps and network endpoint groups (regional serverless NEGs
and zonal NEGs).

The chain a request follows is forwarding rule (IP) -> target HTTPS proxy (certificates)
-> URL map (host/path rules) -> backend service -> NEG (Cloud Run service). Everything
but the proxy's certificate list is read-only here: the runbook only inspects the
topology, and certificates must be attached for a managed certificate to provision.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from fastapi import APIRouter, Request

from . import body_schema, certificates
from .compute import LINK, PREFIX, apply_change, get_resource, global_reads, key, list_response, ref_key, render_op
from .context import Sim, public
from .errors import invalid
from .http_util import get_sim, read_json

router = APIRouter()
ROOT = "/compute/v1/projects/{p}"
# compute.v1 discovery, TargetHttpsProxiesSetSslCertificatesRequest: "At least one SSL
# certificate must be specified. Currently, you may specify up to 15 SSL certificates."
MAX_PROXY_CERTIFICATES = 15
_CERT_KEY = re.compile(r"projects/[^/]+/global/sslCertificates/[^/]+")


# ---- forwarding rules, URL maps, target HTTPS proxies: reads ------------------------
global_reads(router, "forwardingRules", "forwardingRule")
global_reads(router, "urlMaps", "urlMap")
global_reads(router, "targetHttpsProxies", "targetHttpsProxy")


def _certificate_links(sim: Sim, p: str, body: dict[str, Any]) -> list[str]:
    """The request's certificate references as full selfLinks; 400/404 like Compute."""
    refs = body.get("sslCertificates")
    field = "sslCertificates"
    if not isinstance(refs, list) or not refs:
        raise invalid("Invalid value for field 'sslCertificates': at least one SSL certificate must be "
                      "specified.", field)
    if len(refs) > MAX_PROXY_CERTIFICATES:
        raise invalid(f"Invalid value for field 'sslCertificates': {len(refs)} certificates were given; a target "
                      f"HTTPS proxy accepts at most {MAX_PROXY_CERTIFICATES}.", field)
    links: list[str] = []
    for i, ref in enumerate(refs):
        if not isinstance(ref, str) or not ref:
            raise invalid(f"Invalid value for field 'sslCertificates[{i}]': '{ref}'.", f"{field}[{i}]")
        k = ref_key(sim, p, "global/sslCertificates", ref)
        if not _CERT_KEY.fullmatch(k):
            # e.g. a regional certificate for this global proxy
            raise invalid(f"Invalid value for field 'sslCertificates[{i}]': '{ref}'. A global target HTTPS proxy "
                          "takes global SSL certificates.", f"{field}[{i}]")
        # Unverified: Compute's status for a missing referenced resource; 404 notFound
        # naming it is what users report.
        get_resource(sim, k)
        if LINK + k in links:
            raise invalid(f"Invalid value for field 'sslCertificates[{i}]': '{ref}' is listed twice.",
                          f"{field}[{i}]")
        links.append(LINK + k)
    return links


async def _set_ssl_certificates(p: str, name: str, request: Request):
    sim = get_sim(request)
    body = await read_json(request)
    body_schema.check_body("compute.v1", "TargetHttpsProxiesSetSslCertificatesRequest", body)
    k = key(sim, p, "targetHttpsProxies", name)
    current = get_resource(sim, k)
    new = copy.deepcopy(current)
    new["sslCertificates"] = _certificate_links(sim, p, body)
    op, applied = apply_change(sim, request, p, "setSslCertificates", k, current, new)
    if applied:
        # Attaching or detaching decides whether managed certificates may provision.
        certificates.reconcile(sim)
    return render_op(sim, op)


# compute.v1 discovery puts setSslCertificates under projects/{p}/targetHttpsProxies/...
# (no "global/"); the global spelling is accepted too.
@router.post(ROOT + "/targetHttpsProxies/{name}/setSslCertificates")
async def set_ssl_certificates(p: str, name: str, request: Request):
    return await _set_ssl_certificates(p, name, request)


@router.post(PREFIX + "/targetHttpsProxies/{name}/setSslCertificates")
async def set_ssl_certificates_global(p: str, name: str, request: Request):
    return await _set_ssl_certificates(p, name, request)


# ---- network endpoint groups: regional (serverless) and zonal ----------------------
def _neg_reads(scope: str) -> None:
    """GET one NEG and the list, under ``regions/{where}`` or ``zones/{where}``."""
    async def get_list(p: str, where: str, request: Request):
        return list_response(get_sim(request), p, "networkEndpointGroups", "compute#networkEndpointGroupList",
                             request, scope=f"{scope}/{where}")

    async def get_one(p: str, where: str, name: str, request: Request):
        sim = get_sim(request)
        return public(get_resource(sim, f"projects/{sim.project_id(p)}/{scope}/{where}/networkEndpointGroups/{name}"))

    router.add_api_route(ROOT + f"/{scope}/{{where}}/networkEndpointGroups", get_list, methods=["GET"])
    router.add_api_route(ROOT + f"/{scope}/{{where}}/networkEndpointGroups/{{name}}", get_one, methods=["GET"])


_neg_reads("regions")
_neg_reads("zones")
