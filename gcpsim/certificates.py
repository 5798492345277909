"""Compute v1 SSL certificates: get/list/insert/delete, and Google-managed provisioning.

A Google-managed certificate provisions only while it is attached to a target HTTPS proxy
that a forwarding rule serves, and every one of its domains resolves (world ``dns``) to
that forwarding rule's IP ("Troubleshooting SSL certificates", GCP_FIDELITY A3). Until then
it stays PROVISIONING; an attached domain whose DNS points elsewhere reports
FAILED_NOT_VISIBLE. Once eligible it turns ACTIVE after :data:`CERT_PROVISION_SECONDS`
simulated seconds counted from when it became eligible; losing eligibility (detached, or
a rule/DNS change) before then stops the timer. Provisioning is Google's doing, not a
client mutation, so it is never logged.
"""
from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request

from . import body_schema, operations
from .compute import (LINK, NAME_RE, PREFIX, apply_change, earlier_op, global_reads, key, link_key, render_op)
from .context import Sim, numeric_id
from .errors import GoogleError, already_exists, invalid, not_found
from .http_util import get_sim, read_json

router = APIRouter()
# Real managed certificates take 15-60 min once DNS points at the load balancer; 10 min
# keeps rehearsals short while leaving PROVISIONING observable.
CERT_PROVISION_SECONDS = 600.0
_HOST = re.compile(r"(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
TIMER_KIND = "compute.cert.provision"


def attached_proxies(sim: Sim, cert_key: str) -> list[dict[str, Any]]:
    """Target HTTPS proxies whose ``sslCertificates`` name this certificate."""
    return [px for px in sim.store.list("compute", "targetHttpsProxies")
            if cert_key in {link_key(c) for c in px.get("sslCertificates", [])}]


def _serving_ips(sim: Sim, proxy_key: str) -> set[str]:
    return {r.get("IPAddress") for r in sim.store.list("compute", "forwardingRules")
            if link_key(r.get("target", "")) == proxy_key and r.get("IPAddress")}


def domain_status(sim: Sim, cert_key: str, domains: list[str]) -> tuple[dict[str, str], bool]:
    """(domainStatus while not ACTIVE, eligible to provision)."""
    proxies = attached_proxies(sim, cert_key)
    if not proxies:
        # Not attached: Google does not even try (unverified: the per-domain status shown
        # for an unattached certificate; PROVISIONING is what users report).
        return {d: "PROVISIONING" for d in domains}, False
    ips = set().union(*(_serving_ips(sim, link_key(px["selfLink"])) for px in proxies))
    names = sim.dns()
    status = {d: "PROVISIONING" if names.get(d) in ips else "FAILED_NOT_VISIBLE" for d in domains}
    return status, bool(ips) and all(v == "PROVISIONING" for v in status.values())


def reconcile(sim: Sim) -> None:
    """Re-evaluate every managed certificate that is not ACTIVE yet: its domainStatus and
    whether its provisioning timer should run. Called after anything that can change
    eligibility (insert, setSslCertificates, world load)."""
    for cert in sim.store.list("compute", "sslCertificates"):
        managed = cert.get("managed")
        if not managed or managed.get("status") == "ACTIVE":
            continue
        k = link_key(cert["selfLink"])
        status, eligible = domain_status(sim, k, managed.get("domains", []))
        priv = cert.setdefault("_sim", {})
        timer = priv.get("timer")
        if eligible and not timer:
            op = operations.create(sim, api="compute", kind=TIMER_KIND, name=f"internal/cert/{operations.new_id()}",
                                   duration=CERT_PROVISION_SECONDS, ctx={"certificate": k, "id": cert["id"]})
            priv["timer"] = op["name"]
        elif not eligible and timer:
            sim.store.op_delete(timer)  # detached before ACTIVE: provisioning stops
            priv["timer"] = None
        managed["domainStatus"] = status
        sim.store.put("compute", k, cert)


@operations.completer(TIMER_KIND)
def _complete_provisioning(sim: Sim, op: dict[str, Any]) -> None:
    k = op["ctx"]["certificate"]
    cert = sim.store.get("compute", k)
    if cert and cert["id"] == op["ctx"]["id"] and cert.get("managed") and \
            cert.get("_sim", {}).get("timer") == op["name"]:
        cert["_sim"]["timer"] = None
        cert["managed"]["status"] = "ACTIVE"
        cert["managed"]["domainStatus"] = {d: "ACTIVE" for d in cert["managed"]["domains"]}
        cert["subjectAlternativeNames"] = list(cert["managed"]["domains"])
        cert["expireTime"] = sim.iso(op["due"] + 90 * 86400)
        sim.store.put("compute", k, cert)
    operations.finish(sim, op)


global_reads(router, "sslCertificates", "sslCertificate")


def _managed(body: dict[str, Any]) -> dict[str, Any]:
    managed = body.get("managed", {})
    domains = managed.get("domains", []) if isinstance(managed, dict) else None
    if not isinstance(domains, list) or not domains or len(domains) > 100:
        raise invalid("Invalid value for field 'resource.managed.domains': between 1 and 100 domains are "
                      "required.", "managed.domains")
    for d in domains:
        if isinstance(d, str) and d.startswith("*."):
            raise invalid(f"Invalid value for field 'resource.managed.domains': '{d}'. Wildcard domains are "
                          "not supported for Google-managed certificates.", "managed.domains")
        if not isinstance(d, str) or not _HOST.fullmatch(d):
            raise invalid(f"Invalid value for field 'resource.managed.domains': '{d}'.", "managed.domains")
    return {"domains": list(domains), "status": "PROVISIONING", "domainStatus": {d: "PROVISIONING" for d in domains}}


@router.post(PREFIX + "/sslCertificates")
async def insert_ssl_certificate(p: str, request: Request):
    sim = get_sim(request)
    body = await read_json(request)
    body_schema.check_body("compute.v1", "SslCertificate", body)
    name = body.get("name", "")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise invalid(f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex "
                      "'[a-z]([-a-z0-9]*[a-z0-9])?'.", "name")
    k = key(sim, p, "sslCertificates", name)
    if sim.store.get("compute", k) is not None and not earlier_op(sim, request):
        raise already_exists(f"The resource '{k}'")
    cert_type = body.get("type") or ("MANAGED" if "managed" in body else "SELF_MANAGED")
    t = sim.iso()
    cert: dict[str, Any] = {
        "kind": "compute#sslCertificate", "id": numeric_id(k, t), "creationTimestamp": t, "name": name,
        "description": body.get("description", ""), "selfLink": LINK + k, "type": cert_type,
    }
    if cert_type == "MANAGED":
        cert["managed"] = _managed(body)
    elif cert_type == "SELF_MANAGED":
        if not body.get("certificate") or not body.get("privateKey"):
            raise invalid("A self-managed certificate needs 'certificate' and 'privateKey'.", "certificate")
        # The private key is never stored (and the real API never returns it).
        cert["certificate"] = body["certificate"]
        cert["expireTime"] = sim.iso(sim.now() + 365 * 86400)
    else:
        raise invalid(f"Invalid value for field 'resource.type': '{cert_type}'.", "type")
    op, applied = apply_change(sim, request, p, "insert", k, sim.store.get("compute", k), cert)
    if applied and cert_type == "MANAGED":
        reconcile(sim)
    return render_op(sim, op)


@router.delete(PREFIX + "/sslCertificates/{c}")
async def delete_ssl_certificate(p: str, c: str, request: Request):
    sim = get_sim(request)
    k = key(sim, p, "sslCertificates", c)
    current = sim.store.get("compute", k)
    repeat = earlier_op(sim, request) is not None
    if current is None and not repeat:
        raise not_found(f"The resource '{k}'")
    users = attached_proxies(sim, k) if current is not None else []
    if users and not repeat:
        # Compute refuses to delete a resource another one references; Google's text and reason
        # as public reports quote them (terraform-google-lb-http#207, pcf-pipelines#106).
        raise GoogleError(400, f"The ssl_certificate resource '{k}' is already being used by "
                               f"'{link_key(users[0]['selfLink'])}'",
                          reason="resourceInUseByAnotherResource")
    op, applied = apply_change(sim, request, p, "delete", k, current, None)
    if applied and current.get("_sim", {}).get("timer"):
        sim.store.op_delete(current["_sim"]["timer"])
    return render_op(sim, op)
