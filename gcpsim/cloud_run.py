"""Cloud Run Admin API v2: services get/list/patch, revisions list/get/delete, operations.

Mutation logging: a service PATCH is logged when it is accepted (the real API updates
the service spec and ``generation`` at once; the rollout only changes status), a revision
DELETE is logged when its operation completes (that is when the revision disappears).
"""
from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter, Request

from . import body_schema, faults, health_model, operations
from .context import ACTOR, Sim, digest, public
from .errors import already_exists, failed_precondition, grpc_status, invalid, GoogleError
from .http_util import flag, get_sim, paged, read_json
from .run_limits import startup_failure_message, startup_initial_delay, startup_window
from .run_model import (
    DELETE_REVISION_SECONDS, REVISION_TYPE, ROLLOUT_SECONDS, SERVICE_TYPE, TRAFFIC_ONLY_SECONDS,
    WRITABLE, build_revision, camel, condition, default_traffic, duration_seconds, normalize, render_revision,
    resolve_traffic, serving_revisions, set_revision_status, short, startup_problem, validate_template,
    validate_traffic,
)

router = APIRouter()
MAX_WAIT_REAL_SECONDS = 60.0


def _service_name(sim: Sim, p: str, l: str, s: str) -> str:
    return f"projects/{sim.project_id(p)}/locations/{l}/services/{s}"


def _get_service(sim: Sim, name: str) -> dict[str, Any]:
    return sim.require("run", name, f"Resource '{short(name)}' of kind 'SERVICE' in region '{name.split('/')[3]}' "
                                    f"in project '{name.split('/')[1]}'")


def revisions_of(sim: Sim, service_name: str) -> list[dict[str, Any]]:
    """Revisions of a service, newest first (as the API lists them)."""
    revs = sim.store.list("run", "revisions", service_name + "/revisions/")
    return sorted(revs, key=lambda r: r["_sim"]["number"], reverse=True)


def service_uri(sim: Sim, name: str) -> str:
    _, project, _, region, _, svc = name.split("/")
    return f"https://{svc}-{sim.project_number(project)}.{region}.run.app"


def set_service_status(svc: dict[str, Any], state: str, t: str, message: str | None = None) -> None:
    """Terminal condition + RoutesReady/ConfigurationsReady, as the API reports them."""
    extra: dict[str, Any] = {}
    if state == "CONDITION_FAILED":
        extra = {"reason": "REVISION_FAILED", "severity": "ERROR", "message": message or "Revision failed."}
    svc["terminalCondition"] = condition("Ready", state, t, **extra)
    svc["conditions"] = [
        condition("RoutesReady", "CONDITION_RECONCILING" if state == "CONDITION_RECONCILING" else
                  "CONDITION_SUCCEEDED", t),
        condition("ConfigurationsReady", state, t, **extra),
    ]
    svc["reconciling"] = state == "CONDITION_RECONCILING"
    svc["etag"] = '"' + digest([svc["name"], svc["generation"], state, t]) + '"'


# ---- services -------------------------------------------------------------------
@router.get("/v2/projects/{p}/locations/{l}/services/{s}")
async def get_service(p: str, l: str, s: str, request: Request):
    sim = get_sim(request)
    return public(_get_service(sim, _service_name(sim, p, l, s)))


@router.get("/v2/projects/{p}/locations/{l}/services")
async def list_services(p: str, l: str, request: Request):
    sim = get_sim(request)
    items = sim.store.list("run", "services", f"projects/{sim.project_id(p)}/locations/{l}/services/")
    return paged(items, request, "services", public)


def _fields_to_update(request: Request, req: dict[str, Any]) -> list[str]:
    mask = request.query_params.get("updateMask")
    if not mask:
        # No mask: every writable field the request carries replaces the current one.
        return [f for f in WRITABLE if f in req]
    fields = []
    for path in mask.split(","):
        top = camel(path.strip().split(".")[0])
        if top not in WRITABLE:
            raise invalid(f"updateMask: field '{path.strip()}' cannot be updated.", "updateMask")
        if top not in fields:
            fields.append(top)
    return fields


def _expand_connector(sim: Sim, svc_name: str, template: dict[str, Any]) -> None:
    vpc = template.get("vpcAccess")
    if vpc and vpc.get("connector") and "/" not in vpc["connector"]:
        _, project, _, region, *_ = svc_name.split("/")
        vpc["connector"] = f"projects/{project}/locations/{region}/connectors/{vpc['connector']}"


@router.patch("/v2/projects/{p}/locations/{l}/services/{s}")
async def update_service(p: str, l: str, s: str, request: Request):
    sim = get_sim(request)
    body = await read_json(request)
    name = _service_name(sim, p, l, s)
    current = _get_service(sim, name)
    body_schema.check_body("run.v2", "GoogleCloudRunV2Service", body)
    req = normalize(body)
    new = copy.deepcopy(current)
    for f in _fields_to_update(request, req):
        if f in req:
            new[f] = req[f]
        else:
            new.pop(f, None)
    template = new.setdefault("template", {})
    _expand_connector(sim, name, template)
    validate_template(template)
    new["traffic"] = new.get("traffic") or default_traffic()

    revisions = {short(r["name"]): r for r in revisions_of(sim, name)}
    template_changed = template != current.get("template", {})
    new_rev = None
    t = sim.iso()
    if template_changed:
        if template.get("revision") and template["revision"] in revisions:
            raise already_exists(f"Revision named '{template['revision']}'")
        number = current["_sim"]["revision_counter"] + 1
        new_rev = build_revision(sim, new, template, number, t)
        revisions[short(new_rev["name"])] = new_rev  # naming it in traffic is refused: not ready
    validate_traffic(new["traffic"], revisions)

    changed = any(new.get(f) != current.get(f) for f in WRITABLE)
    op_name = f"projects/{sim.project_id(p)}/locations/{l}/operations/{operations.new_id()}"
    if flag(request, "validateOnly"):
        # Nothing is stored: the finished operation only carries the would-be service.
        return render_op(sim, operations.build(sim, api="run", kind="run.rollout", name=op_name, ctx={}, done=True,
                                               result=public(new)))
    if not changed:
        # An idempotent repeat: a finished operation, no new generation, no mutation.
        return render_op(sim, operations.create_done(
            sim, api="run", kind="run.rollout", name=op_name, ctx={"service": name}, result=public(current)))

    generation = int(current["generation"]) + 1
    new["generation"] = str(generation)
    new["updateTime"] = t
    new["lastModifier"] = ACTOR
    duration = TRAFFIC_ONLY_SECONDS
    pending_rev = None
    if new_rev is not None:
        new["_sim"]["revision_counter"] = new_rev["_sim"]["number"]
        new["latestCreatedRevision"] = new_rev["name"]
        fault = faults.take(sim.store, "revision_start_failure", "run", "PATCH", request.url.path)
        duration = ROLLOUT_SECONDS
        # A2: the container answers its startup probe after the route's startup_seconds;
        # a probe window shorter than that fails the revision when the window runs out.
        needed, window = health_model.startup_seconds(sim, name), startup_window(template)
        if fault:
            new_rev["_sim"]["start_failure"] = fault.get("message") or (
                "The user-provided container failed to start and listen on the port defined by the PORT "
                "environment variable within the allocated timeout (injected fault).")
        elif window < needed:
            new_rev["_sim"]["start_failure"] = startup_failure_message(template)
            duration = max(ROLLOUT_SECONDS, window)
        else:
            # The first probe runs only after initialDelaySeconds: no start is seen sooner.
            duration = max(ROLLOUT_SECONDS, needed, startup_initial_delay(template))
        new_rev["_sim"]["due"] = sim.now() + duration
        pending_rev = new_rev["name"]
    else:
        # Same template: this generation is only reconciled once the latest created
        # revision (maybe still rolling out from an earlier update) has settled.
        latest = sim.store.get("run", current.get("latestCreatedRevision", ""))
        if latest and latest["_sim"]["status"] == "PENDING":
            pending_rev = latest["name"]
            duration = max(duration, latest["_sim"].get("due", 0) - sim.now())
    set_service_status(new, "CONDITION_RECONCILING", t)
    with sim.store.transaction():
        if new_rev is not None:
            sim.store.put("run", new_rev["name"], new_rev)
        sim.store.put("run", name, new)
        op = operations.create(
            sim, api="run", kind="run.rollout", name=op_name, duration=duration,
            ctx={"service": name, "revision": pending_rev, "generation": generation},
            method="PATCH", path=request.url.path)
        sim.log("run", "PATCH", name, current, new, operation=op_name)
    return render_op(sim, op)


def _finalize_revision(sim: Sim, op: dict[str, Any], rev: dict[str, Any], t: str) -> str | None:
    """Decide (once) whether a pending revision starts; returns the failure message."""
    if rev["_sim"]["status"] == "PENDING":
        problem = (op["fail"] or {}).get("message") or rev["_sim"].get("start_failure") \
            or startup_problem(sim, rev["_sim"]["template"], rev["name"].split("/")[1])
        set_revision_status(rev, "FAILED" if problem else "READY", t, problem)
        sim.store.put("run", rev["name"], rev)
    if rev["_sim"]["status"] == "FAILED":
        return rev["conditions"][0].get("message", "Revision failed.")
    return None


@operations.completer("run.rollout")
def _complete_rollout(sim: Sim, op: dict[str, Any]) -> None:
    ctx, t = op["ctx"], sim.iso(op["due"])
    svc = sim.store.get("run", ctx["service"])
    if svc is None:
        operations.finish(sim, op, error=grpc_status(5, f"Service {ctx['service']} was deleted."))
        return
    error = None
    rev = sim.store.get("run", ctx["revision"]) if ctx.get("revision") else None
    if rev is not None:
        problem = _finalize_revision(sim, op, rev, t)
        if problem:
            code = (op["fail"] or {}).get("code", 9)
            error = grpc_status(code, f"Revision '{short(rev['name'])}' is not ready and cannot serve traffic. "
                                      f"{problem}")
        else:
            latest_ready = sim.store.get("run", svc.get("latestReadyRevision", ""))
            if latest_ready is None or latest_ready["_sim"]["number"] < rev["_sim"]["number"]:
                svc["latestReadyRevision"] = rev["name"]
    elif op["fail"]:
        error = op["fail"]

    if int(svc["generation"]) == ctx["generation"]:
        # This operation reconciles the current spec: publish its outcome.
        svc["observedGeneration"] = str(ctx["generation"])
        if error:
            # Traffic stays where it was; latestReadyRevision is unchanged.
            set_service_status(svc, "CONDITION_FAILED", t, error["message"])
        else:
            svc["trafficStatuses"] = resolve_traffic(
                svc["traffic"], short(svc.get("latestReadyRevision", "")) or None, svc["uri"])
            set_service_status(svc, "CONDITION_SUCCEEDED", t)
    sim.store.put("run", svc["name"], svc)
    # A failed operation still reports the service as metadata (render_op uses the result).
    operations.finish(sim, op, error=error, result=public(svc))


# ---- revisions ------------------------------------------------------------------
@router.get("/v2/projects/{p}/locations/{l}/services/{s}/revisions")
async def list_revisions(p: str, l: str, s: str, request: Request):
    sim = get_sim(request)
    svc = _get_service(sim, _service_name(sim, p, l, s))
    return paged(revisions_of(sim, svc["name"]), request, "revisions", lambda r: render_revision(r, svc))


def _get_revision(sim: Sim, p: str, l: str, s: str, r: str) -> tuple[dict[str, Any], dict[str, Any]]:
    svc = _get_service(sim, _service_name(sim, p, l, s))
    return svc, sim.require("run", f"{svc['name']}/revisions/{r}",
                            f"Resource '{r}' of kind 'REVISION' in region '{l}' in project '{p}'")


@router.get("/v2/projects/{p}/locations/{l}/services/{s}/revisions/{r}")
async def get_revision(p: str, l: str, s: str, r: str, request: Request):
    sim = get_sim(request)
    svc, rev = _get_revision(sim, p, l, s, r)
    return render_revision(rev, svc)


@router.delete("/v2/projects/{p}/locations/{l}/services/{s}/revisions/{r}")
async def delete_revision(p: str, l: str, s: str, r: str, request: Request):
    sim = get_sim(request)
    svc, rev = _get_revision(sim, p, l, s, r)
    etag = request.query_params.get("etag")
    if etag and etag != rev.get("etag"):
        raise GoogleError(409, f"The etag '{etag}' does not match the revision's current etag.",
                          status="ABORTED", reason="etagMismatch")
    named = {short(t.get("revision", "")) for t in svc.get("traffic", []) if t.get("revision")}
    if serving_revisions(svc).get(r, 0) > 0 or r in named:
        raise failed_precondition(
            f"Revision '{r}' is currently serving traffic (or is named in the traffic configuration) "
            "and cannot be deleted. Route traffic away from it first.")
    if rev["name"] == svc.get("latestCreatedRevision") and rev["_sim"]["status"] == "PENDING":
        raise failed_precondition(f"Revision '{r}' is still being deployed and cannot be deleted.")
    op_name = f"projects/{sim.project_id(p)}/locations/{l}/operations/{operations.new_id()}"
    snapshot = render_revision(rev, svc)
    if flag(request, "validateOnly"):
        return render_op(sim, operations.build(sim, api="run", kind="run.revision.delete", name=op_name, ctx={},
                                               done=True, result=snapshot))
    if rev["_sim"].get("deleting"):
        raise failed_precondition(f"Revision '{r}' is already being deleted.")
    rev["_sim"]["deleting"] = True
    with sim.store.transaction():
        sim.store.put("run", rev["name"], rev)
        op = operations.create(sim, api="run", kind="run.revision.delete", name=op_name,
                               duration=DELETE_REVISION_SECONDS,
                               ctx={"revision": rev["name"], "snapshot": snapshot},
                               method="DELETE", path=request.url.path)
    return render_op(sim, op)


@operations.completer("run.revision.delete")
def _complete_delete(sim: Sim, op: dict[str, Any]) -> None:
    rev = sim.store.get("run", op["ctx"]["revision"])
    if rev is None:
        operations.finish(sim, op, error=grpc_status(5, "Revision was already deleted."))
        return
    if op["fail"]:
        rev["_sim"].pop("deleting", None)
        sim.store.put("run", rev["name"], rev)
        operations.fail(sim, op)
        return
    svc = sim.store.get("run", rev["service"])
    final = render_revision(rev, svc) | {"deleteTime": sim.iso(op["due"])}
    sim.store.delete("run", rev["name"])
    sim.log("run", "DELETE", rev["name"], rev, None, at=op["due"], operation=op["name"])
    operations.finish(sim, op, result=final)


# ---- operations -----------------------------------------------------------------
def render_op(sim: Sim, op: dict[str, Any]) -> dict[str, Any]:
    """google.longrunning.Operation JSON: only name/metadata/done/response/error, with
    registered run v2 types in the Any fields (the LRO client parses it strictly)."""
    type_url = SERVICE_TYPE if op["kind"] == "run.rollout" else REVISION_TYPE
    out: dict[str, Any] = {"name": op["name"], "done": op["done"]}
    ctx = op.get("ctx", {})
    if op["done"]:
        metadata = op.get("result") or ctx.get("snapshot") or {}
    elif op["kind"] == "run.rollout":
        metadata = public(sim.store.get("run", ctx["service"]) or {})
    else:
        rev = sim.store.get("run", ctx["revision"])
        metadata = render_revision(rev, sim.store.get("run", rev["service"])) if rev else ctx.get("snapshot", {})
    out["metadata"] = {"@type": type_url, **metadata}
    if op["done"]:
        if op.get("error"):
            out["error"] = op["error"]
        else:
            out["response"] = {"@type": type_url, **(op.get("result") or {})}
    return out


def _get_op(sim: Sim, p: str, l: str, o: str) -> dict[str, Any]:
    return operations.get_or_404(sim, f"projects/{sim.project_id(p)}/locations/{l}/operations/{o}", "run",
                                 f"Operation '{o}'")


@router.get("/v2/projects/{p}/locations/{l}/operations/{o}")
async def get_operation(p: str, l: str, o: str, request: Request):
    sim = get_sim(request)
    return render_op(sim, _get_op(sim, p, l, o))


@router.post("/v2/projects/{p}/locations/{l}/operations/{o}:wait")
async def wait_operation(p: str, l: str, o: str, request: Request):
    sim = get_sim(request)
    body = await read_json(request)
    timeout = duration_seconds(body.get("timeout"), MAX_WAIT_REAL_SECONDS)
    if timeout is None:
        raise invalid(f"timeout: '{body['timeout']}' is not a duration like '30s'.", "timeout")
    op = _get_op(sim, p, l, o)
    return render_op(sim, await operations.wait(sim, op["name"], "run", f"Operation '{o}'",
                                                min(timeout, MAX_WAIT_REAL_SECONDS)))


@router.delete("/v2/projects/{p}/locations/{l}/operations/{o}")
async def delete_operation(p: str, l: str, o: str, request: Request):
    sim = get_sim(request)
    sim.store.op_delete(_get_op(sim, p, l, o)["name"])
    return {}


@router.get("/v2/projects/{p}/locations/{l}/operations")
async def list_operations(p: str, l: str, request: Request):
    sim = get_sim(request)
    ops = sim.store.ops_list("run", f"projects/{sim.project_id(p)}/locations/{l}/operations/")
    return paged(ops, request, "operations", lambda o: render_op(sim, o))

