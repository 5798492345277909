"""Cloud SQL Admin v1: instances get/list/patch, operations get/list, tiers, flags.

One admin operation runs per instance at a time; a concurrent PATCH gets HTTP 409 with
``errors[0].reason = "operationInProgress"``. A tier change, or a change of a flag that
``requiresRestart``, restarts the instance: it reports MAINTENANCE while the operation
runs. Settings are applied, and the mutation logged, when the operation completes.
"""
from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter, Request

from . import body_schema, faults, operations
from .context import ACTOR, Sim, digest, public
from .errors import in_progress, invalid
from .http_util import get_sim, read_json
from .sql_catalog import (check_engine, default_max_connections, flag_def, flag_items, tier_items, tier_shape,
                          validate_flags)

router = APIRouter()
BASE = "https://sqladmin.googleapis.com/v1"
# Simulated seconds: a tier change (stop, resize, start), a restart for a static flag,
# and an online settings change.
TIER_CHANGE_SECONDS, RESTART_SECONDS, ONLINE_SECONDS = 300.0, 120.0, 30.0
PENDING_SECONDS = 2.0  # an operation reports PENDING this long before RUNNING
OUTPUT_ONLY_SETTINGS = {"kind", "settingsVersion"}
# Tuples, not sets: membership compares by equality, so a value that is not hashable (a
# list) is refused as INVALID_ARGUMENT instead of raising TypeError.
ENUMS = {"activationPolicy": ("ALWAYS", "NEVER", "ON_DEMAND"), "availabilityType": ("ZONAL", "REGIONAL"),
         "edition": ("ENTERPRISE", "ENTERPRISE_PLUS")}


def instance_key(project_id: str, instance: str) -> str:
    return f"projects/{project_id}/instances/{instance}"


def _get(sim: Sim, p: str, i: str) -> dict[str, Any]:
    return sim.require("sqladmin", instance_key(sim.project_id(p), i), f"The Cloud SQL instance '{i}'")


def maintenance_fault(sim: Sim, inst: dict[str, Any]) -> dict[str, Any] | None:
    return faults.active(sim.store, "sql_maintenance", "sqladmin", instance_key(inst["project"], inst["name"]))


def restarting(sim: Sim, inst: dict[str, Any]) -> bool:
    """A tier or restart-flag change is running, or a ``sql_maintenance`` fault stands."""
    op = sim.store.op_get(inst["_sim"]["op"]) if inst["_sim"].get("op") else None
    return bool(op and not op["done"] and op["ctx"].get("restart")) or maintenance_fault(sim, inst) is not None


def render_instance(sim: Sim, inst: dict[str, Any]) -> dict[str, Any]:
    out = public(inst)
    if restarting(sim, inst):
        out["state"] = "MAINTENANCE"
    return out


def effective_max_connections(inst: dict[str, Any]) -> int:
    """The max_connections the instance runs with: its flag, else the tier default."""
    for f in inst["settings"].get("databaseFlags", []):
        if f["name"] == "max_connections":
            return int(f["value"])
    _, mem = tier_shape(inst["settings"]["tier"], inst["settings"].get("edition", "ENTERPRISE"))
    return default_max_connections(mem)


def _merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(current)
    for key, value in patch.items():
        if key in OUTPUT_ONLY_SETTINGS:
            continue
        if key == "databaseFlags" or not isinstance(value, dict) or not isinstance(out.get(key), dict):
            out[key] = value  # lists (databaseFlags!) are replaced whole, as documented
        else:
            out[key] = _merge(out[key], value)
    return out


def _disk_gb(settings: dict[str, Any]) -> int:
    value = settings.get("dataDiskSizeGb", 0)
    if not str(value).isdigit():
        raise invalid(f"settings.dataDiskSizeGb: '{value}' is not a whole number of GB.", "settings.dataDiskSizeGb")
    return int(value)


def _validate_settings(new: dict[str, Any], old: dict[str, Any], version: str) -> dict[str, str]:
    """Check the merged settings and normalise their ``databaseFlags``; returns {flag: value}."""
    for field, allowed in ENUMS.items():
        if field in new and new[field] not in allowed:
            raise invalid(f"settings.{field}: '{new[field]}' is not one of {sorted(allowed)}.", f"settings.{field}")
    tier_shape(new.get("tier", ""), new.get("edition", "ENTERPRISE"))
    if new.get("tier") != old.get("tier") or new.get("edition") != old.get("edition"):
        check_engine(new["tier"], new.get("edition", "ENTERPRISE"), version)
    if _disk_gb(new) < _disk_gb(old):
        raise invalid("settings.dataDiskSizeGb: disk size cannot be decreased.", "settings.dataDiskSizeGb")
    flags = validate_flags(new.get("databaseFlags", []), version)
    if "databaseFlags" in new:
        # Stored as the API returns them: string values, sorted by name. An integer value or
        # a reordered list is then no change (no spurious operation, restart or mutation).
        new["databaseFlags"] = [{"name": n, "value": v} for n, v in sorted(flags.items())]
    return flags


@router.get("/v1/projects/{p}/instances/{i}")
async def get_instance(p: str, i: str, request: Request):
    sim = get_sim(request)
    return render_instance(sim, _get(sim, p, i))


@router.get("/v1/projects/{p}/instances")
async def list_instances(p: str, request: Request):
    sim = get_sim(request)
    items = sim.store.list("sqladmin", "instances", f"projects/{sim.project_id(p)}/instances/")
    return {"kind": "sql#instancesList", "items": [render_instance(sim, x) for x in items]}


@router.patch("/v1/projects/{p}/instances/{i}")
async def patch_instance(p: str, i: str, request: Request):
    sim = get_sim(request)
    body = await read_json(request)
    inst = _get(sim, p, i)
    # Unverified: that the Cloud SQL Admin API (a JSON-native API) reads a number sent for a
    # string field such as a flag's value as its text; this simulator always has.
    body_schema.check_body("sqladmin.v1", "DatabaseInstance", body, numbers_as_strings=True)
    busy = sim.store.op_get(inst["_sim"]["op"]) if inst["_sim"].get("op") else None
    fault = maintenance_fault(sim, inst)
    if fault or (busy and not busy["done"]):
        if fault:
            faults.record_fire(sim.store, fault)
        raise in_progress("Operation failed because another operation was already in progress. "
                          f"Instance '{i}' is {'in maintenance' if fault else 'busy'}; try again later.")
    settings = body.get("settings", {})
    if not isinstance(settings, dict):
        raise invalid("settings: must be an object.", "settings")
    old = inst["settings"]
    new = _merge(old, settings)
    new_flags = _validate_settings(new, old, inst["databaseVersion"])
    old_flags = {f["name"]: f["value"] for f in old.get("databaseFlags", [])}
    comparable = lambda s: {k: v for k, v in s.items() if k not in OUTPUT_ONLY_SETTINGS}  # noqa: E731
    key = instance_key(inst["project"], inst["name"])
    op_id = operations.new_id()
    if comparable(new) == comparable(old):
        op = operations.create_done(sim, api="sqladmin", kind="sqladmin.update",
                                    name=f"projects/{inst['project']}/operations/{op_id}",
                                    ctx={"instance": key, "restart": False}, result=None)
        return render_op(sim, op)
    restart_flags = {n for n in set(new_flags) | set(old_flags)
                     if new_flags.get(n) != old_flags.get(n)
                     and (flag_def(n, inst["databaseVersion"]) or {}).get("requiresRestart")}
    tier_change = new.get("tier") != old.get("tier")
    seconds = TIER_CHANGE_SECONDS if tier_change else RESTART_SECONDS if restart_flags else ONLINE_SECONDS
    with sim.store.transaction():
        op = operations.create(sim, api="sqladmin", kind="sqladmin.update",
                               name=f"projects/{inst['project']}/operations/{op_id}", duration=seconds,
                               ctx={"instance": key, "settings": new, "restart": bool(tier_change or restart_flags)},
                               method="PATCH", path=request.url.path)
        inst["_sim"]["op"] = op["name"]
        sim.store.put("sqladmin", key, inst)
    return render_op(sim, op)


@operations.completer("sqladmin.update")
def _complete_update(sim: Sim, op: dict[str, Any]) -> None:
    inst = sim.store.get("sqladmin", op["ctx"]["instance"])
    if inst is None:
        operations.finish(sim, op, error={"code": 5, "message": "Instance was deleted."})
        return
    inst["_sim"]["op"] = None
    if op["fail"]:
        sim.store.put("sqladmin", op["ctx"]["instance"], inst)
        operations.fail(sim, op)
        return
    before = copy.deepcopy(inst)
    inst["settings"] = op["ctx"]["settings"]
    inst["settings"]["settingsVersion"] = str(int(before["settings"].get("settingsVersion", "0")) + 1)
    inst["state"] = "RUNNABLE"
    inst["etag"] = digest([op["ctx"]["instance"], inst["settings"]], 32)
    sim.store.put("sqladmin", op["ctx"]["instance"], inst)
    sim.log("sqladmin", "PATCH", op["ctx"]["instance"], before, inst, at=op["due"], operation=op["name"])
    operations.finish(sim, op)


_SQL_ERROR_CODES = {8: "QUOTA_EXCEEDED", 10: "OPERATION_CONFLICT", 14: "UNAVAILABLE"}


def render_op(sim: Sim, op: dict[str, Any]) -> dict[str, Any]:
    """sql#operation: PENDING -> RUNNING -> DONE; a failure is DONE with ``error``."""
    project, _, op_id = op["name"].split("/")[1:]
    instance = op["ctx"]["instance"].rsplit("/", 1)[-1]
    now = sim.now()
    status = "DONE" if op["done"] else "PENDING" if now < op["created"] + PENDING_SECONDS else "RUNNING"
    out: dict[str, Any] = {
        "kind": "sql#operation", "name": op_id, "status": status, "operationType": "UPDATE",
        "targetId": instance, "targetProject": project, "user": ACTOR,
        "targetLink": f"{BASE}/projects/{project}/instances/{instance}",
        "selfLink": f"{BASE}/projects/{project}/operations/{op_id}",
        "insertTime": sim.iso(op["created"]),
    }
    if status != "PENDING":
        out["startTime"] = sim.iso(op["created"] + (0 if op["due"] == op["created"] else PENDING_SECONDS))
    if op["done"]:
        out["endTime"] = sim.iso(op.get("ended", op["created"]))
        if op.get("error"):
            out["error"] = {"kind": "sql#operationErrors", "errors": [{
                "kind": "sql#operationError",
                "code": _SQL_ERROR_CODES.get(op["error"]["code"], "INTERNAL_ERROR"),
                "message": op["error"]["message"]}]}
    return out


@router.get("/v1/projects/{p}/operations/{o}")
async def get_operation(p: str, o: str, request: Request):
    sim = get_sim(request)
    return render_op(sim, operations.get_or_404(sim, f"projects/{sim.project_id(p)}/operations/{o}", "sqladmin",
                                                f"The Cloud SQL operation '{o}'"))


@router.get("/v1/projects/{p}/operations")
async def list_operations(p: str, request: Request):
    sim = get_sim(request)
    ops = sim.store.ops_list("sqladmin", f"projects/{sim.project_id(p)}/operations/")
    instance = request.query_params.get("instance")
    items = [render_op(sim, o) for o in reversed(ops)]
    if instance:
        items = [o for o in items if o["targetId"] == instance]
    return {"kind": "sql#operationsList", "items": items}


@router.get("/v1/projects/{p}/tiers")
async def list_tiers(p: str, request: Request):
    sim = get_sim(request)
    regions = {i["region"] for i in sim.store.list("sqladmin", "instances", f"projects/{sim.project_id(p)}/")}
    return {"kind": "sql#tiersList", "items": tier_items(sorted(regions)[0] if regions else "us-central1")}


@router.get("/v1/flags")
async def list_flags(request: Request):
    return {"kind": "sql#flagsList", "items": flag_items(request.query_params.get("databaseVersion"))}
