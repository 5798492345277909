"""Compute Engine v1 (global): health checks, backend services, global operations, and the
helpers every Compute router shares (operation start/idempotency, list, filter).

SSL certificates live in :mod:`gcpsim.certificates`, the load-balancer topology (forwarding
rules, target proxies, URL maps, NEGs) in :mod:`gcpsim.load_balancing`.

Compute applies a change when it accepts the request (the returned operation only reports
it), so mutations are logged at acceptance. An operation fated by a fault to fail or hang
applies nothing. ``requestId`` makes a call idempotent: a repeat returns the first
operation and changes nothing.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Callable

from fastapi import APIRouter, Request

from . import body_schema, operations
from .context import ACTOR, Sim, digest, numeric_id, public
from .errors import GoogleError, invalid
from .http_util import get_sim, read_json

router = APIRouter()
PREFIX = "/compute/v1/projects/{p}/global"
LINK = "https://www.googleapis.com/compute/v1/"
# Simulated seconds: global operations finish quickly; wait blocks <= 2 min.
OP_SECONDS = 2.0
WAIT_SIM_SECONDS = 120.0
HC_BLOCKS = {"HTTP": "httpHealthCheck", "HTTPS": "httpsHealthCheck", "HTTP2": "http2HealthCheck",
             "TCP": "tcpHealthCheck", "SSL": "sslHealthCheck", "GRPC": "grpcHealthCheck"}
OUTPUT_ONLY = {"id", "kind", "creationTimestamp", "selfLink", "fingerprint", "region"}
NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_HC_KEY = re.compile(r"projects/[^/]+/global/healthChecks/[^/]+")


def key(sim: Sim, p: str, collection: str, name: str) -> str:
    return f"projects/{sim.project_id(p)}/global/{collection}/{name}"


def get_resource(sim: Sim, k: str) -> dict[str, Any]:
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


def link_key(link: Any) -> str:
    """The path of a Compute reference with the URL head removed (a full URL becomes
    ``projects/...``); partial references are returned unchanged. To turn any reference
    into a store key use :func:`ref_key`."""
    text = str(link)
    for head in (LINK, "https://compute.googleapis.com/compute/v1/"):
        if text.startswith(head):
            return text[len(head):]
    return text


def ref_key(sim: Sim, p: str, collection_path: str, ref: Any) -> str:
    """The canonical store key (``projects/{id}/...``) of a Compute reference, as Compute
    accepts it: a bare name (resolved in ``collection_path`` of project ``p``, e.g.
    ``global/healthChecks``), a partial URL ``global/...``, ``regions/R/...`` or
    ``zones/Z/...`` (in project ``p``), a ``projects/...`` partial URL or a full URL. A
    project number is replaced by the project id, as resources are stored under the id."""
    text = link_key(ref).strip().strip("/")
    if text.startswith("projects/"):
        parts = text.split("/")
        if len(parts) > 1:
            parts[1] = sim.project_id(parts[1])
        return "/".join(parts)
    if "/" not in text:
        return f"projects/{sim.project_id(p)}/{collection_path}/{text}"
    return f"projects/{sim.project_id(p)}/{text}"


def has_serverless_neg(sim: Sim, p: str, bs: dict[str, Any]) -> bool:
    """Whether a backend service (of project ``p``) has a serverless NEG backend."""
    for backend in bs.get("backends") or []:
        if not isinstance(backend, dict) or not isinstance(backend.get("group"), str):
            continue
        group = ref_key(sim, p, "global/networkEndpointGroups", backend["group"])
        neg = sim.store.get("compute", group) if "/networkEndpointGroups/" in group else None
        if neg and neg.get("networkEndpointType") == "SERVERLESS":
            return True
    return False


def _validate_backend_service(sim: Sim, p: str, bs: dict[str, Any], body: dict[str, Any]) -> None:
    links = bs.get("healthChecks", [])
    if not isinstance(links, list):
        raise invalid(f"Invalid value for field 'resource.healthChecks': '{links}'. Must be a list.", "healthChecks")
    if has_serverless_neg(sim, p, bs):
        # Load Balancing docs, "Serverless NEGs overview", limitations (GCP_FIDELITY A1): a
        # backend service with serverless NEG backends supports no health checks and no
        # timeoutSec (the timeout is fixed at 60 min). Both texts are Google's, as quoted in
        # public reports (terraform-google-lb-http#358 and #149, terraform-provider-google#7311).
        if "timeoutSec" in body:
            raise invalid(f"Invalid value for field 'resource.timeoutSec': '{body['timeoutSec']}'. Timeout sec is not "
                          "supported for a backend service with Serverless network endpoint groups.", "timeoutSec")
        if links:
            raise invalid("Invalid value for field 'resource.healthChecks': ''. A backend service cannot have a "
                          "healthcheck with Serverless network endpoint group backends.", "healthChecks")
    elif "timeoutSec" in bs:  # absent means the default, 30 (compute.v1 discovery)
        _int_field(bs, "timeoutSec", 1, 2147483647)
    draining = bs.get("connectionDraining", {})
    drain = draining.get("drainingTimeoutSec", 0) if isinstance(draining, dict) else None
    if not isinstance(drain, int) or not 0 <= drain <= 3600:
        raise invalid("Invalid value for field 'resource.connectionDraining.drainingTimeoutSec'.",
                      "connectionDraining.drainingTimeoutSec")
    canonical = []
    for i, link in enumerate(links):
        k = ref_key(sim, p, "global/healthChecks", link) if isinstance(link, str) and link else ""
        if not _HC_KEY.fullmatch(k) or sim.store.get("compute", k) is None:
            raise invalid(f"Invalid value for field 'resource.healthChecks[{i}]': '{link}'. The health check "
                          "does not exist.", f"healthChecks[{i}]")
        canonical.append(LINK + k)
    # References are stored as full selfLinks, whatever form the request used (as Compute does).
    if links:
        bs["healthChecks"] = canonical
    for backend in bs.get("backends") or []:
        if isinstance(backend, dict) and isinstance(backend.get("group"), str) and backend["group"]:
            backend["group"] = LINK + ref_key(sim, p, "global/networkEndpointGroups", backend["group"])


# ---- operations -----------------------------------------------------------------
def earlier_op(sim: Sim, request: Request) -> dict[str, Any] | None:
    """The operation an earlier call with this ``requestId`` started, while it still exists."""
    request_id = request.query_params.get("requestId")
    name = sim.store.meta_get(f"reqid:compute:{request_id}") if request_id else None
    return sim.store.op_get(name) if name else None


def _begin(sim: Sim, request: Request, p: str, op_type: str, target: str) -> tuple[dict[str, Any], bool]:
    """Start (or, for a repeated requestId, find) the operation for a mutating call.

    Returns (operation, apply): ``apply`` is False when this is an idempotent repeat or
    when a fault dooms the operation, so the caller must not change anything."""
    earlier = earlier_op(sim, request)
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
                 validate: Callable[[dict[str, Any], dict[str, Any]], None]) -> dict[str, Any]:
    """PATCH: merge the body into the resource, refuse a rename, validate, then apply."""
    body = await read_json(request)
    k = key(sim, p, collection, name)
    current = get_resource(sim, k)
    if "fingerprint" in current and not earlier_op(sim, request) \
            and body.get("fingerprint") != current["fingerprint"]:
        # Optimistic locking: the caller must send the fingerprint of its latest GET.
        raise GoogleError(412, "Invalid fingerprint: the resource has changed since it was read "
                               f"(sent '{body.get('fingerprint')}'). Get the {noun} again and retry.",
                          status="FAILED_PRECONDITION", reason="conditionNotMet")
    if body.get("name", name) != name:
        raise invalid(f"Invalid value for field 'resource.name': a {noun} cannot be renamed.", "name")
    new = _merge(current, body)
    validate(new, body)
    return render_op(sim, apply_change(sim, request, p, "patch", k, current, new)[0])


@router.patch(PREFIX + "/healthChecks/{hc}")
async def patch_health_check(p: str, hc: str, request: Request):
    def validate(new: dict[str, Any], body: dict[str, Any]) -> None:
        body_schema.check_body("compute.v1", "HealthCheck", body)  # unknown fields, wrong types
        validate_health_check(new)

    return await _patch(get_sim(request), request, p, "healthChecks", hc, "health check", validate)


# ---- backend services -----------------------------------------------------------
@router.patch(PREFIX + "/backendServices/{bs}")
async def patch_backend_service(p: str, bs: str, request: Request):
    sim = get_sim(request)
    def validate(new: dict[str, Any], body: dict[str, Any]) -> None:
        body_schema.check_body("compute.v1", "BackendService", body)
        _validate_backend_service(sim, p, new, body)

    return await _patch(sim, request, p, "backendServices", bs, "backend service", validate)


def apply_change(sim: Sim, request: Request, p: str, op_type: str, k: str, current: dict[str, Any] | None,
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


def list_response(sim: Sim, p: str, collection: str, kind: str, request: Request,
                  scope: str = "global") -> dict[str, Any]:
    """A Compute list: ``scope`` is ``global``, ``regions/R`` or ``zones/Z``."""
    prefix = f"projects/{sim.project_id(p)}/{scope}/{collection}/"
    items = [public(r) for r in sim.store.list("compute", collection, prefix)]
    flt = request.query_params.get("filter")
    if flt:
        items = [r for r in items if _filter_match(r, flt)]
    return {"kind": kind, "id": numeric_id(p, scope, collection), "items": items,
            "selfLink": f"{LINK}projects/{p}/{scope}/{collection}"}


def global_reads(router: APIRouter, collection: str, kind: str) -> None:
    """Register GET of one resource and of the list for a global Compute collection."""
    async def get_one(p: str, name: str, request: Request):
        sim = get_sim(request)
        return public(get_resource(sim, key(sim, p, collection, name)))

    async def get_list(p: str, request: Request):
        return list_response(get_sim(request), p, collection, f"compute#{kind}List", request)

    router.add_api_route(f"{PREFIX}/{collection}/{{name}}", get_one, methods=["GET"])
    router.add_api_route(f"{PREFIX}/{collection}", get_list, methods=["GET"])


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


# Reads registered after list_response exists; the PATCH routes above keep their paths.
global_reads(router, "healthChecks", "healthCheck")
global_reads(router, "backendServices", "backendService")
