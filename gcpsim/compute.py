"""Compute Engine v1 (global): health checks, backend services, SSL certificates, operations.

Compute applies a change when it accepts the request (the returned operation only reports
it), so mutations are logged at acceptance. An operation fated by a fault to fail or hang
applies nothing. ``requestId`` makes a call idempotent: a repeat returns the first
operation and changes nothing. Managed certificates provision asynchronously.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Callable

from fastapi import APIRouter, Request

from . import operations
from .context import ACTOR, Sim, digest, numeric_id, public
from .errors import GoogleError, already_exists, invalid, not_found
from .http_util import get_sim, read_json

router = APIRouter()
PREFIX = "/compute/v1/projects/{p}/global"
LINK = "https://www.googleapis.com/compute/v1/"
# Simulated seconds: global operations finish quickly; managed certificates take minutes
# (real ones take 15-60 min once DNS points at the load balancer); wait blocks <= 2 min.
OP_SECONDS = 2.0
CERT_PROVISION_SECONDS = 600.0
WAIT_SIM_SECONDS = 120.0
HC_BLOCKS = {"HTTP": "httpHealthCheck", "HTTPS": "httpsHealthCheck", "HTTP2": "http2HealthCheck",
             "TCP": "tcpHealthCheck", "SSL": "sslHealthCheck", "GRPC": "grpcHealthCheck"}
OUTPUT_ONLY = {"id", "kind", "creationTimestamp", "selfLink", "fingerprint", "region"}
_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_HOST = re.compile(r"(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def key(sim: Sim, p: str, collection: str, name: str) -> str:
    return f"projects/{sim.project_id(p)}/global/{collection}/{name}"


def _get(sim: Sim, k: str) -> dict[str, Any]:
    return sim.require("compute", k, f"The resource '{k}'")


def fingerprint(res: dict[str, Any]) -> str:
    """Hashes the content and the resource's change counter, so that a change which
    reverts an earlier one still gets a new fingerprint (an old one never matches again)."""
    content = {k: v for k, v in res.items() if k not in ("fingerprint", "_sim")}
    return digest([content, res.get("_sim", {}).get("changes", 0)], 11) + "="


def _merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(current)
    for k, v in patch.items():
        if k in OUTPUT_ONLY:
            continue
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _int_field(res: dict[str, Any], field: str, lo: int, hi: int) -> int:
    value = res.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise invalid(f"Invalid value for field 'resource.{field}': '{value}'. Must be an integer between "
                      f"{lo} and {hi}.", field)
    return value


def validate_health_check(hc: dict[str, Any]) -> None:
    interval = _int_field(hc, "checkIntervalSec", 1, 300)
    timeout = _int_field(hc, "timeoutSec", 1, 300)
    _int_field(hc, "healthyThreshold", 1, 10)
    _int_field(hc, "unhealthyThreshold", 1, 10)
    if timeout > interval:
        raise invalid(f"Invalid value for field 'resource.timeoutSec': '{timeout}'. timeoutSec must be less "
                      f"than or equal to checkIntervalSec ({interval}).", "timeoutSec")
    block = HC_BLOCKS.get(hc.get("type")) if isinstance(hc.get("type"), str) else None
    if block is None:
        raise invalid(f"Invalid value for field 'resource.type': '{hc.get('type')}'.", "type")
    for other in HC_BLOCKS.values():
        if other != block and other in hc:
            raise invalid(f"Invalid value for field 'resource.{other}': a {hc['type']} health check must use "
                          f"'{block}'.", other)
    settings = hc.get(block, {})
    path = settings.get("requestPath", "/") if isinstance(settings, dict) else None
    if not isinstance(path, str) or not path.startswith("/"):
        raise invalid(f"Invalid value for field 'resource.{block}.requestPath': '{path}'.",
                      f"{block}.requestPath")


def _validate_backend_service(sim: Sim, p: str, bs: dict[str, Any]) -> None:
    _int_field(bs, "timeoutSec", 1, 2147483647)
    draining = bs.get("connectionDraining", {})
    drain = draining.get("drainingTimeoutSec", 0) if isinstance(draining, dict) else None
    if not isinstance(drain, int) or not 0 <= drain <= 3600:
        raise invalid("Invalid value for field 'resource.connectionDraining.drainingTimeoutSec'.",
                      "connectionDraining.drainingTimeoutSec")
    links = bs.get("healthChecks", [])
    if not isinstance(links, list):
        raise invalid(f"Invalid value for field 'resource.healthChecks': '{links}'. Must be a list.", "healthChecks")
    for i, link in enumerate(links):
        hc_name = str(link).rstrip("/").rsplit("/", 1)[-1]
        if sim.store.get("compute", key(sim, p, "healthChecks", hc_name)) is None:
            raise invalid(f"Invalid value for field 'resource.healthChecks[{i}]': '{link}'. The health check "
                          "does not exist.", f"healthChecks[{i}]")


# ---- operations -----------------------------------------------------------------
def _earlier_op(sim: Sim, request: Request) -> dict[str, Any] | None:
    """The operation an earlier call with this ``requestId`` started, while it still exists."""
    request_id = request.query_params.get("requestId")
    name = sim.store.meta_get(f"reqid:compute:{request_id}") if request_id else None
    return sim.store.op_get(name) if name else None


def _begin(sim: Sim, request: Request, p: str, op_type: str, target: str) -> tuple[dict[str, Any], bool]:
    """Start (or, for a repeated requestId, find) the operation for a mutating call.

    Returns (operation, apply): ``apply`` is False when this is an idempotent repeat or
    when a fault dooms the operation, so the caller must not change anything."""
    earlier = _earlier_op(sim, request)
    if earlier:
        return earlier, False
    request_id = request.query_params.get("requestId")
    millis = int(sim.now() * 1000)
    op_name = f"operation-{millis}-{operations.new_id()[:13].replace('-', '')}"
    op = operations.create(sim, api="compute", kind="compute.op",
                           name=f"projects/{sim.project_id(p)}/global/operations/{op_name}",
                           duration=OP_SECONDS, method=request.method, path=request.url.path,
                           ctx={"type": op_type, "target": target, "request_id": request_id})
    if request_id:
        sim.store.meta_set(f"reqid:compute:{request_id}", op["name"])
    doomed = op["fail"] is not None or op["due"] is None  # a fault makes it fail or hang
    return op, not doomed


@operations.completer("compute.op")
def _complete_op(sim: Sim, op: dict[str, Any]) -> None:
    # The change (if any) was applied at acceptance; the operation only reports it.
    if op["fail"]:
        operations.fail(sim, op)
    else:
        operations.finish(sim, op)


_HTTP_FOR_CODE = {3: 400, 5: 404, 7: 403, 8: 429, 9: 400, 10: 409, 13: 500, 14: 503}
_CODE_NAMES = {8: "RESOURCE_OPERATION_RATE_EXCEEDED", 13: "INTERNAL_ERROR", 14: "UNAVAILABLE",
               9: "CONDITION_NOT_MET", 3: "INVALID_ARGUMENT"}


def render_op(sim: Sim, op: dict[str, Any]) -> dict[str, Any]:
    project, _, _, name = op["name"].split("/")[1:]
    ctx = op["ctx"]
    status = "DONE" if op["done"] else "RUNNING"
    out: dict[str, Any] = {
        "kind": "compute#operation", "id": numeric_id(op["name"]), "name": name,
        "operationType": ctx["type"], "targetLink": LINK + ctx["target"], "targetId": numeric_id(ctx["target"]),
        "status": status, "user": ACTOR, "progress": 100 if op["done"] else 0,
        "insertTime": sim.iso(op["created"]), "startTime": sim.iso(op["created"]),
        "selfLink": f"{LINK}projects/{project}/global/operations/{name}",
    }
    if op["done"]:
        out["endTime"] = sim.iso(op.get("ended", op["created"]))
        if op.get("error"):
            code = op["error"]["code"]
            out["error"] = {"errors": [{"code": _CODE_NAMES.get(code, "INTERNAL_ERROR"),
                                        "message": op["error"]["message"]}]}
            out["httpErrorStatusCode"] = _HTTP_FOR_CODE.get(code, 500)
            out["httpErrorMessage"] = op["error"]["message"]
    return out


def _op_name(sim: Sim, p: str, o: str) -> str:
    return f"projects/{sim.project_id(p)}/global/operations/{o}"


@router.get(PREFIX + "/operations/{o}")
async def get_operation(p: str, o: str, request: Request):
    sim = get_sim(request)
    name = _op_name(sim, p, o)
    return render_op(sim, operations.get_or_404(sim, name, "compute", f"The resource '{name}'"))


@router.post(PREFIX + "/operations/{o}/wait")
async def wait_operation(p: str, o: str, request: Request):
    sim = get_sim(request)
    name = _op_name(sim, p, o)
    # Blocks up to ~2 simulated minutes, like the real wait (which gives up after ~2 min).
    return render_op(sim, await operations.wait(sim, name, "compute", f"The resource '{name}'",
                                                sim.clock.real_seconds(WAIT_SIM_SECONDS)))


# ---- health checks --------------------------------------------------------------
async def _patch(sim: Sim, request: Request, p: str, collection: str, name: str, noun: str,
                 validate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """PATCH: merge the body into the resource, refuse a rename, validate, then apply."""
    body = await read_json(request)
    k = key(sim, p, collection, name)
    current = _get(sim, k)
    if "fingerprint" in current and not _earlier_op(sim, request) \
            and body.get("fingerprint") != current["fingerprint"]:
        # Optimistic locking: the caller must send the fingerprint of its latest GET.
        raise GoogleError(412, "Invalid fingerprint: the resource has changed since it was read "
                               f"(sent '{body.get('fingerprint')}'). Get the {noun} again and retry.",
                          status="FAILED_PRECONDITION", reason="conditionNotMet")
    if body.get("name", name) != name:
        raise invalid(f"Invalid value for field 'resource.name': a {noun} cannot be renamed.", "name")
    new = _merge(current, body)
    validate(new)
    return render_op(sim, _apply(sim, request, p, "patch", k, current, new)[0])


@router.get(PREFIX + "/healthChecks/{hc}")
async def get_health_check(p: str, hc: str, request: Request):
    sim = get_sim(request)
    return public(_get(sim, key(sim, p, "healthChecks", hc)))


@router.get(PREFIX + "/healthChecks")
async def list_health_checks(p: str, request: Request):
    return _list(get_sim(request), p, "healthChecks", "compute#healthCheckList", request)


@router.patch(PREFIX + "/healthChecks/{hc}")
async def patch_health_check(p: str, hc: str, request: Request):
    return await _patch(get_sim(request), request, p, "healthChecks", hc, "health check", validate_health_check)


# ---- backend services -----------------------------------------------------------
@router.get(PREFIX + "/backendServices/{bs}")
async def get_backend_service(p: str, bs: str, request: Request):
    sim = get_sim(request)
    return public(_get(sim, key(sim, p, "backendServices", bs)))


@router.get(PREFIX + "/backendServices")
async def list_backend_services(p: str, request: Request):
    return _list(get_sim(request), p, "backendServices", "compute#backendServiceList", request)


@router.patch(PREFIX + "/backendServices/{bs}")
async def patch_backend_service(p: str, bs: str, request: Request):
    sim = get_sim(request)
    return await _patch(sim, request, p, "backendServices", bs, "backend service",
                        lambda new: _validate_backend_service(sim, p, new))


def _apply(sim: Sim, request: Request, p: str, op_type: str, k: str, current: dict[str, Any] | None,
           new: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """Start the operation and, unless it is a repeat or doomed, apply + log the change.
    Returns (operation, whether the change was applied)."""
    with sim.store.transaction():
        op, apply = _begin(sim, request, p, op_type, k)
        apply = apply and new != current
        if apply:
            if new is None:
                sim.store.delete("compute", k)
            else:
                if "fingerprint" in new:
                    priv = new.setdefault("_sim", {})
                    priv["changes"] = priv.get("changes", 0) + 1
                    new["fingerprint"] = fingerprint(new)
                sim.store.put("compute", k, new)
            sim.log("compute", request.method, k, current, new, request_id=op["ctx"]["request_id"],
                    operation=op["name"])
    return op, apply


def _list(sim: Sim, p: str, collection: str, kind: str, request: Request) -> dict[str, Any]:
    items = [public(r) for r in sim.store.list("compute", collection, f"projects/{sim.project_id(p)}/global/"
                                               f"{collection}/")]
    flt = request.query_params.get("filter")
    if flt:
        items = [r for r in items if _filter_match(r, flt)]
    return {"kind": kind, "id": numeric_id(p, collection), "items": items,
            "selfLink": f"{LINK}projects/{p}/global/{collection}"}


_FILTER = re.compile(r'^\s*\(?\s*([A-Za-z_.]+)\s*(=|!=|:|eq|ne)\s*"?([^"()]*?)"?\s*\)?\s*$')


def _filter_match(res: dict[str, Any], expr: str) -> bool:
    """A small subset of Compute list filters: ``field = "v"``, ``!=``, ``:`` (contains,
    ``*`` wildcard), ``eq``/``ne`` (regular expressions), joined by AND."""
    for term in re.split(r"\s+AND\s+", expr.strip()):
        m = _FILTER.match(term)
        if not m:
            raise invalid(f"Invalid list filter expression '{term}'.", "filter")
        field, op, value = m.groups()
        actual: Any = res
        for part in field.split("."):
            actual = actual.get(part) if isinstance(actual, dict) else None
        actual = "" if actual is None else str(actual)
        ok = {"=": lambda: actual == value, "!=": lambda: actual != value,
              ":": lambda: re.fullmatch(".*" + re.escape(value).replace(r"\*", ".*") + ".*", actual) is not None,
              "eq": lambda: re.fullmatch(value, actual) is not None,
              "ne": lambda: re.fullmatch(value, actual) is None}[op]()
        if not ok:
            return False
    return True


# ---- SSL certificates -----------------------------------------------------------
@router.get(PREFIX + "/sslCertificates")
async def list_ssl_certificates(p: str, request: Request):
    return _list(get_sim(request), p, "sslCertificates", "compute#sslCertificateList", request)


@router.get(PREFIX + "/sslCertificates/{c}")
async def get_ssl_certificate(p: str, c: str, request: Request):
    sim = get_sim(request)
    return public(_get(sim, key(sim, p, "sslCertificates", c)))


@router.post(PREFIX + "/sslCertificates")
async def insert_ssl_certificate(p: str, request: Request):
    sim = get_sim(request)
    body = await read_json(request)
    name = body.get("name", "")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise invalid(f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex "
                      "'[a-z]([-a-z0-9]*[a-z0-9])?'.", "name")
    k = key(sim, p, "sslCertificates", name)
    if sim.store.get("compute", k) is not None and not _earlier_op(sim, request):
        raise already_exists(f"The resource '{k}'")
    cert_type = body.get("type") or ("MANAGED" if "managed" in body else "SELF_MANAGED")
    t = sim.iso()
    cert: dict[str, Any] = {
        "kind": "compute#sslCertificate", "id": numeric_id(k, t), "creationTimestamp": t, "name": name,
        "description": body.get("description", ""), "selfLink": LINK + k, "type": cert_type,
    }
    if cert_type == "MANAGED":
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
        cert["managed"] = {"domains": list(domains), "status": "PROVISIONING",
                           "domainStatus": {d: "PROVISIONING" for d in domains}}
    elif cert_type == "SELF_MANAGED":
        if not body.get("certificate") or not body.get("privateKey"):
            raise invalid("A self-managed certificate needs 'certificate' and 'privateKey'.", "certificate")
        # The private key is never stored (and the real API never returns it).
        cert["certificate"] = body["certificate"]
        cert["expireTime"] = sim.iso(sim.now() + 365 * 86400)
    else:
        raise invalid(f"Invalid value for field 'resource.type': '{cert_type}'.", "type")
    op, applied = _apply(sim, request, p, "insert", k, sim.store.get("compute", k), cert)
    if applied and cert_type == "MANAGED":
        operations.create(sim, api="compute", kind="compute.cert.provision",
                          name=f"internal/cert/{operations.new_id()}", duration=CERT_PROVISION_SECONDS,
                          ctx={"certificate": k, "id": cert["id"]})
    return render_op(sim, op)


@operations.completer("compute.cert.provision")
def _complete_provisioning(sim: Sim, op: dict[str, Any]) -> None:
    cert = sim.store.get("compute", op["ctx"]["certificate"])
    if cert and cert["id"] == op["ctx"]["id"] and cert.get("managed"):
        # Provisioning is Google's doing, not a client mutation: it is not logged.
        cert["managed"]["status"] = "ACTIVE"
        cert["managed"]["domainStatus"] = {d: "ACTIVE" for d in cert["managed"]["domains"]}
        cert["subjectAlternativeNames"] = list(cert["managed"]["domains"])
        cert["expireTime"] = sim.iso(op["due"] + 90 * 86400)
        sim.store.put("compute", op["ctx"]["certificate"], cert)
    operations.finish(sim, op)


@router.delete(PREFIX + "/sslCertificates/{c}")
async def delete_ssl_certificate(p: str, c: str, request: Request):
    sim = get_sim(request)
    k = key(sim, p, "sslCertificates", c)
    current = sim.store.get("compute", k)
    if current is None and not _earlier_op(sim, request):
        raise not_found(f"The resource '{k}'")
    return render_op(sim, _apply(sim, request, p, "delete", k, current, None)[0])
