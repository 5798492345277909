"""Compute Engine v1 (global): health checks, backend services, SSL certificates, operations.

Compute applies a change when it accepts the request (the returned operation only reports
it), so mutations are logged at acceptance. An operation fated by a fault to fail or hang
applies nothing. ``requestId`` makes a call idempotent: a repeat returns the first
operation and changes nothing. Managed certificates provision asynchronously.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from fastapi import APIRouter, Request

from . import operations
from .context import Sim, digest, numeric_id, public
from .errors import GoogleError, already_exists, grpc_status, invalid, not_found
from .http_util import read_json, wait_until

router = APIRouter()
PREFIX = "/compute/v1/projects/{p}/global"
LINK = "https://www.googleapis.com/compute/v1/"
ACTOR = "anonymous@gcpsim.local"
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


def _sim(request: Request) -> Sim:
    return request.app.state.sim


def key(sim: Sim, p: str, collection: str, name: str) -> str:
    return f"projects/{sim.project_id(p)}/global/{collection}/{name}"


def _get(sim: Sim, k: str, what: str) -> dict[str, Any]:
    res = sim.store.get("compute", k)
    if res is None:
        raise not_found(f"The resource '{k}' ({what})")
    return res


def fingerprint(res: dict[str, Any]) -> str:
    return digest({k: v for k, v in res.items() if k not in ("fingerprint", "_sim")}, 11) + "="


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
    block = HC_BLOCKS.get(hc.get("type", ""))
    if block is None:
        raise invalid(f"Invalid value for field 'resource.type': '{hc.get('type')}'.", "type")
    for other in HC_BLOCKS.values():
        if other != block and other in hc:
            raise invalid(f"Invalid value for field 'resource.{other}': a {hc['type']} health check must use "
                          f"'{block}'.", other)
    path = hc.get(block, {}).get("requestPath", "/")
    if not str(path).startswith("/"):
        raise invalid(f"Invalid value for field 'resource.{block}.requestPath': '{path}'.",
                      f"{block}.requestPath")


def _validate_backend_service(sim: Sim, p: str, bs: dict[str, Any]) -> None:
    _int_field(bs, "timeoutSec", 1, 2147483647)
    drain = bs.get("connectionDraining", {}).get("drainingTimeoutSec", 0)
    if not isinstance(drain, int) or not 0 <= drain <= 3600:
        raise invalid("Invalid value for field 'resource.connectionDraining.drainingTimeoutSec'.",
                      "connectionDraining.drainingTimeoutSec")
    for i, link in enumerate(bs.get("healthChecks", [])):
        hc_name = str(link).rstrip("/").rsplit("/", 1)[-1]
        if sim.store.get("compute", key(sim, p, "healthChecks", hc_name)) is None:
            raise invalid(f"Invalid value for field 'resource.healthChecks[{i}]': '{link}'. The health check "
                          "does not exist.", f"healthChecks[{i}]")


# ---- operations -----------------------------------------------------------------
def _begin(sim: Sim, request: Request, p: str, op_type: str, target: str) -> tuple[dict[str, Any], bool]:
    """Start (or, for a repeated requestId, find) the operation for a mutating call.

    Returns (operation, apply): ``apply`` is False when this is an idempotent repeat or
    when a fault dooms the operation, so the caller must not change anything."""
    request_id = request.query_params.get("requestId")
    if request_id:
        earlier = sim.store.meta_get(f"reqid:compute:{request_id}")
        if earlier and sim.store.op_get(earlier):
            return sim.store.op_get(earlier), False
    millis = int(sim.now() * 1000)
    op_name = f"operation-{millis}-{operations.new_id()[:13].replace('-', '')}"
    op = operations.create(sim, api="compute", kind="compute.op",
                           name=f"projects/{sim.project_id(p)}/global/operations/{op_name}",
                           duration=OP_SECONDS, method=request.method, path=request.url.path,
                           ctx={"type": op_type, "target": target, "request_id": request_id})
    if request_id:
        sim.store.meta_set(f"reqid:compute:{request_id}", op["name"])
    return op, not (op["fail"] or op["hang"])


@operations.completer("compute.op")
def _complete_op(sim: Sim, op: dict[str, Any]) -> None:
    error = grpc_status(op["fail"]["code"], op["fail"]["message"]) if op["fail"] else None
    operations.finish(sim, op, error=error)


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


@router.get(PREFIX + "/operations/{o}")
async def get_operation(p: str, o: str, request: Request):
    sim = _sim(request)
    op = sim.store.op_get(f"projects/{sim.project_id(p)}/global/operations/{o}")
    if op is None:
        raise not_found(f"The resource 'projects/{p}/global/operations/{o}'")
    return render_op(sim, op)


@router.post(PREFIX + "/operations/{o}/wait")
async def wait_operation(p: str, o: str, request: Request):
    sim = _sim(request)
    name = f"projects/{sim.project_id(p)}/global/operations/{o}"
    if sim.store.op_get(name) is None:
        raise not_found(f"The resource '{name}'")
    # Blocks up to ~2 simulated minutes, like the real wait (which gives up after ~2 min).
    await wait_until(lambda: sim.store.op_get(name)["done"], sim.clock.real_seconds(WAIT_SIM_SECONDS),
                     lambda: operations.settle(sim))
    return render_op(sim, sim.store.op_get(name))


# ---- health checks --------------------------------------------------------------
@router.get(PREFIX + "/healthChecks/{hc}")
async def get_health_check(p: str, hc: str, request: Request):
    sim = _sim(request)
    return public(_get(sim, key(sim, p, "healthChecks", hc), "healthCheck"))


@router.get(PREFIX + "/healthChecks")
async def list_health_checks(p: str, request: Request):
    return _list(_sim(request), p, "healthChecks", "compute#healthCheckList", request)


@router.patch(PREFIX + "/healthChecks/{hc}")
async def patch_health_check(p: str, hc: str, request: Request):
    sim = _sim(request)
    body = await read_json(request)
    k = key(sim, p, "healthChecks", hc)
    current = _get(sim, k, "healthCheck")
    if body.get("name", hc) != hc:
        raise invalid("Invalid value for field 'resource.name': a health check cannot be renamed.", "name")
    new = _merge(current, body)
    validate_health_check(new)
    return render_op(sim, _apply(sim, request, p, "patch", k, current, new)[0])


# ---- backend services -----------------------------------------------------------
@router.get(PREFIX + "/backendServices/{bs}")
async def get_backend_service(p: str, bs: str, request: Request):
    sim = _sim(request)
    return public(_get(sim, key(sim, p, "backendServices", bs), "backendService"))


@router.get(PREFIX + "/backendServices")
async def list_backend_services(p: str, request: Request):
    return _list(_sim(request), p, "backendServices", "compute#backendServiceList", request)


@router.patch(PREFIX + "/backendServices/{bs}")
async def patch_backend_service(p: str, bs: str, request: Request):
    sim = _sim(request)
    body = await read_json(request)
    k = key(sim, p, "backendServices", bs)
    current = _get(sim, k, "backendService")
    request_id = request.query_params.get("requestId")
    repeat = request_id and sim.store.meta_get(f"reqid:compute:{request_id}")
    if not repeat and body.get("fingerprint") != current["fingerprint"]:
        # Optimistic locking: the caller must send the fingerprint of its latest GET.
        raise GoogleError(412, "Invalid fingerprint: the resource has changed since it was read "
                               f"(sent '{body.get('fingerprint')}'). Get the backend service again and retry.",
                          status="FAILED_PRECONDITION", reason="conditionNotMet")
    if body.get("name", bs) != bs:
        raise invalid("Invalid value for field 'resource.name': a backend service cannot be renamed.", "name")
    new = _merge(current, body)
    _validate_backend_service(sim, p, new)
    return render_op(sim, _apply(sim, request, p, "patch", k, current, new)[0])


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
    return _list(_sim(request), p, "sslCertificates", "compute#sslCertificateList", request)


@router.get(PREFIX + "/sslCertificates/{c}")
async def get_ssl_certificate(p: str, c: str, request: Request):
    sim = _sim(request)
    return public(_get(sim, key(sim, p, "sslCertificates", c), "sslCertificate"))


@router.post(PREFIX + "/sslCertificates")
async def insert_ssl_certificate(p: str, request: Request):
    sim = _sim(request)
    body = await read_json(request)
    name = body.get("name", "")
    if not _NAME.fullmatch(name):
        raise invalid(f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex "
                      "'[a-z]([-a-z0-9]*[a-z0-9])?'.", "name")
    k = key(sim, p, "sslCertificates", name)
    request_id = request.query_params.get("requestId")
    if sim.store.get("compute", k) is not None and not (
            request_id and sim.store.meta_get(f"reqid:compute:{request_id}")):
        raise already_exists(f"The resource '{k}'")
    cert_type = body.get("type") or ("MANAGED" if "managed" in body else "SELF_MANAGED")
    t = sim.iso()
    cert: dict[str, Any] = {
        "kind": "compute#sslCertificate", "id": numeric_id(k, t), "creationTimestamp": t, "name": name,
        "description": body.get("description", ""), "selfLink": LINK + k, "type": cert_type,
    }
    if cert_type == "MANAGED":
        domains = body.get("managed", {}).get("domains", [])
        if not domains or len(domains) > 100:
            raise invalid("Invalid value for field 'resource.managed.domains': between 1 and 100 domains are "
                          "required.", "managed.domains")
        for d in domains:
            if d.startswith("*."):
                raise invalid(f"Invalid value for field 'resource.managed.domains': '{d}'. Wildcard domains are "
                              "not supported for Google-managed certificates.", "managed.domains")
            if not _HOST.fullmatch(str(d)):
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
        operations.create(sim, api="compute", kind="compute.cert.provision", internal=True,
                          name=f"internal/cert/{operations.new_id()}", duration=CERT_PROVISION_SECONDS,
                          ctx={"certificate": k, "id": cert["id"]}, method="", path="")
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
    sim = _sim(request)
    k = key(sim, p, "sslCertificates", c)
    request_id = request.query_params.get("requestId")
    current = sim.store.get("compute", k)
    if current is None and not (request_id and sim.store.meta_get(f"reqid:compute:{request_id}")):
        raise not_found(f"The resource '{k}'")
    return render_op(sim, _apply(sim, request, p, "delete", k, current, None)[0])
