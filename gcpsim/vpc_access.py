"""Serverless VPC Access v1: connectors get/list/create/delete/patch, operations.

Limits (documented by ``gcloud ... vpc-access connectors create/update``): machine type
e2-micro, f1-micro or e2-standard-4; minInstances 2-9; maxInstances 3-10; min < max; on
update instance counts only grow. Changes are applied, and logged as mutations, when the
operation completes (that is when the connector's configuration actually changes).
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from fastapi import APIRouter, Request

from . import body_schema, operations
from .context import Sim, public
from .errors import already_exists, grpc_status, in_progress, invalid
from .http_util import get_sim, paged, read_json
from .run_model import camel

router = APIRouter()

MACHINE_TYPES = ("e2-micro", "f1-micro", "e2-standard-4")
# Throughput one connector instance carries (Mbps): the documented connector ranges
# (e2-micro 200-1000, f1-micro 100-500, e2-standard-4 3200-16000 for 2-10 instances)
# divided by the instance count. The application model uses the same figures.
MBPS_PER_INSTANCE = {"e2-micro": 100, "f1-micro": 50, "e2-standard-4": 1600}
CREATE_SECONDS, UPDATE_SECONDS, DELETE_SECONDS = 120.0, 180.0, 60.0
UPDATABLE = ("minInstances", "maxInstances", "machineType")
OP_METADATA = "type.googleapis.com/google.cloud.vpcaccess.v1.OperationMetadata"
CONNECTOR_TYPE = "type.googleapis.com/google.cloud.vpcaccess.v1.Connector"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
METHOD = "google.cloud.vpcaccess.v1.VpcAccessService."


def _parent(sim: Sim, p: str, l: str) -> str:
    return f"projects/{sim.project_id(p)}/locations/{l}"


def _get(sim: Sim, name: str) -> dict[str, Any]:
    return sim.require("vpcaccess", name, f"Connector {name}")


def validate_sizes(machine: Any, lo: Any, hi: Any) -> None:
    if machine not in MACHINE_TYPES:
        raise invalid(f"machineType: '{machine}' is not supported; use one of {', '.join(MACHINE_TYPES)}.",
                      "machineType")
    if not isinstance(lo, int) or not 2 <= lo <= 9:
        raise invalid(f"minInstances: {lo} is out of range; it must be between 2 and 9.", "minInstances")
    if not isinstance(hi, int) or not 3 <= hi <= 10:
        raise invalid(f"maxInstances: {hi} is out of range; it must be between 3 and 10.", "maxInstances")
    if lo >= hi:
        raise invalid(f"minInstances ({lo}) must be lower than maxInstances ({hi}).", "minInstances")


def check_cidr(cidr: Any) -> None:
    """A connector's range: an IPv4 network in CIDR notation, prefix /28, host bits zero
    (GCP_FACTS: ``ipCidrRange (/28)``)."""
    try:
        network = ipaddress.IPv4Network(cidr, strict=True) if isinstance(cidr, str) else None
    except ValueError:
        network = None
    if network is None or network.prefixlen != 28 or "/" not in cidr:
        raise invalid(f"ipCidrRange: {str(cidr)[:60]!r} is not a valid /28 IPv4 range (e.g. '10.8.0.0/28').",
                      "ipCidrRange")


def with_throughput(conn: dict[str, Any]) -> dict[str, Any]:
    per = MBPS_PER_INSTANCE[conn["machineType"]]
    conn["minThroughput"] = conn["minInstances"] * per
    conn["maxThroughput"] = conn["maxInstances"] * per
    return conn


def _int(value: Any, field: str) -> Any:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if value is not None and not isinstance(value, int):
        raise invalid(f"{field}: must be an integer.", field)
    return value


@router.get("/v1/projects/{p}/locations")
async def list_locations(p: str, request: Request):
    sim = get_sim(request)
    regions = sorted({c["name"].split("/")[3] for c in sim.store.list("vpcaccess", "connectors")} | {"us-central1"})
    return {"locations": [{"name": f"projects/{sim.project_id(p)}/locations/{r}", "locationId": r}
                          for r in regions]}


@router.get("/v1/projects/{p}/locations/{l}/connectors/{c}")
async def get_connector(p: str, l: str, c: str, request: Request):
    sim = get_sim(request)
    return public(_get(sim, f"{_parent(sim, p, l)}/connectors/{c}"))


@router.get("/v1/projects/{p}/locations/{l}/connectors")
async def list_connectors(p: str, l: str, request: Request):
    sim = get_sim(request)
    items = sim.store.list("vpcaccess", "connectors", _parent(sim, p, l) + "/connectors/")
    return paged(items, request, "connectors", public)


@router.post("/v1/projects/{p}/locations/{l}/connectors")
async def create_connector(p: str, l: str, request: Request):
    sim = get_sim(request)
    body = await read_json(request)
    body_schema.check_body("vpcaccess.v1", "Connector", body)
    cid = request.query_params.get("connectorId", "")
    if not re.fullmatch(r"[a-z][-a-z0-9]{0,23}[a-z0-9]", cid):
        raise invalid("connectorId: must match ^[a-z][-a-z0-9]{0,23}[a-z0-9]$.", "connectorId")
    parent = _parent(sim, p, l)
    name = f"{parent}/connectors/{cid}"
    if sim.store.get("vpcaccess", name) is not None:
        raise already_exists(f"Connector {name}")
    machine = body.get("machineType") or "e2-micro"
    lo = _int(body.get("minInstances"), "minInstances") or 2
    hi = _int(body.get("maxInstances"), "maxInstances") or 10
    validate_sizes(machine, lo, hi)
    subnet = body.get("subnet") or {}
    if not isinstance(subnet, dict):
        raise invalid("subnet: must be an object {name, projectId}.", "subnet")
    cidr = body.get("ipCidrRange", "")
    if cidr:
        check_cidr(cidr)
    if subnet.get("name"):
        network = body.get("network", "")
    elif cidr and body.get("network"):
        network = body["network"]
    else:
        raise invalid("Either subnet.name, or network together with ipCidrRange, is required.", "subnet")
    conn = with_throughput({
        "name": name, "network": network, "ipCidrRange": cidr, "state": "CREATING",
        "machineType": machine, "minInstances": lo, "maxInstances": hi,
        "connectedProjects": [sim.project_id(p)],
    })
    if subnet.get("name"):
        conn["subnet"] = {"name": subnet["name"], "projectId": subnet.get("projectId") or sim.project_id(p)}
    conn["_sim"] = {}
    with sim.store.transaction():
        sim.store.put("vpcaccess", name, conn)
        op = _new_op(sim, parent, "create", name, CREATE_SECONDS, "POST", request.url.path, "CreateConnector")
    return render_op(sim, op)


@router.delete("/v1/projects/{p}/locations/{l}/connectors/{c}")
async def delete_connector(p: str, l: str, c: str, request: Request):
    sim = get_sim(request)
    name = f"{_parent(sim, p, l)}/connectors/{c}"
    conn = _get(sim, name)
    # A connector whose creation failed (ERROR) can only be deleted: that is allowed.
    _require_state(conn, "READY", "ERROR")
    conn["_sim"]["before"] = public(conn)
    conn["state"] = "DELETING"
    with sim.store.transaction():
        sim.store.put("vpcaccess", name, conn)
        op = _new_op(sim, _parent(sim, p, l), "delete", name, DELETE_SECONDS, "DELETE", request.url.path,
                     "DeleteConnector")
    return render_op(sim, op)


@router.patch("/v1/projects/{p}/locations/{l}/connectors/{c}")
async def patch_connector(p: str, l: str, c: str, request: Request):
    sim = get_sim(request)
    body = await read_json(request)
    name = f"{_parent(sim, p, l)}/connectors/{c}"
    conn = _get(sim, name)
    body_schema.check_body("vpcaccess.v1", "Connector", body)
    mask = [camel(f.strip()) for f in request.query_params.get("updateMask", "").split(",") if f.strip()]
    if not mask:
        mask = [f for f in UPDATABLE if f in body]  # empty mask: all modifiable fields given
    for f in mask:
        if f not in UPDATABLE:
            raise invalid(f"updateMask: field '{f}' cannot be updated; updatable fields are "
                          f"{', '.join(UPDATABLE)}.", "updateMask")
        if f not in body:
            raise invalid(f"{f}: named in updateMask but missing from the request body.", f)
    if ("minInstances" in mask) != ("maxInstances" in mask):
        raise invalid("minInstances and maxInstances must be updated together.",
                      "minInstances" if "minInstances" not in mask else "maxInstances")
    new = {f: conn[f] for f in UPDATABLE} | {f: _int(body[f], f) if f != "machineType" else body[f] for f in mask}
    validate_sizes(new["machineType"], new["minInstances"], new["maxInstances"])
    for f in ("minInstances", "maxInstances"):
        if new[f] < conn[f]:
            raise invalid(f"{f}: {new[f]} is lower than the current value {conn[f]}; connector instance "
                          "counts can only be increased (create a new connector to shrink).", f)
    _require_state(conn, "READY")
    parent = _parent(sim, p, l)
    if all(new[f] == conn[f] for f in UPDATABLE):
        op = operations.create_done(sim, api="vpcaccess", kind="vpcaccess.patch",
                                    name=f"{parent}/operations/{operations.new_id()}",
                                    ctx={"connector": name, "method": METHOD + "UpdateConnector"},
                                    result=public(conn))
        return render_op(sim, op)
    conn["_sim"]["pending"] = new
    conn["_sim"]["before"] = public(conn)
    conn["state"] = "UPDATING"
    with sim.store.transaction():
        sim.store.put("vpcaccess", name, conn)
        op = _new_op(sim, parent, "patch", name, UPDATE_SECONDS, "PATCH", request.url.path, "UpdateConnector")
    return render_op(sim, op)


def _require_state(conn: dict[str, Any], *states: str) -> None:
    if conn["state"] not in states:
        raise in_progress(f"Connector {conn['name']} is {conn['state']}; wait for its operation to finish.")


def _new_op(sim: Sim, parent: str, verb: str, target: str, seconds: float, method: str, path: str,
            rpc: str) -> dict[str, Any]:
    return operations.create(sim, api="vpcaccess", kind=f"vpcaccess.{verb}",
                             name=f"{parent}/operations/{operations.new_id()}", duration=seconds,
                             ctx={"connector": target, "method": METHOD + rpc}, method=method, path=path)


@operations.completer("vpcaccess.create")
def _complete_create(sim: Sim, op: dict[str, Any]) -> None:
    conn = sim.store.get("vpcaccess", op["ctx"]["connector"])
    if conn is None:
        operations.finish(sim, op, error=grpc_status(5, "Connector was deleted."))
        return
    conn["state"] = "ERROR" if op["fail"] else "READY"
    sim.store.put("vpcaccess", conn["name"], conn)
    if op["fail"]:
        operations.fail(sim, op)
        return
    sim.log("vpcaccess", "POST", conn["name"], None, conn, at=op["due"], operation=op["name"])
    operations.finish(sim, op, result=public(conn))


@operations.completer("vpcaccess.patch")
def _complete_patch(sim: Sim, op: dict[str, Any]) -> None:
    conn = sim.store.get("vpcaccess", op["ctx"]["connector"])
    if conn is None:
        operations.finish(sim, op, error=grpc_status(5, "Connector was deleted."))
        return
    pending, before = conn["_sim"].pop("pending"), conn["_sim"].pop("before")
    conn["state"] = "READY"
    if op["fail"]:
        sim.store.put("vpcaccess", conn["name"], conn)
        operations.fail(sim, op)
        return
    conn.update(pending)
    with_throughput(conn)
    sim.store.put("vpcaccess", conn["name"], conn)
    sim.log("vpcaccess", "PATCH", conn["name"], before, conn, at=op["due"], operation=op["name"])
    operations.finish(sim, op, result=public(conn))


@operations.completer("vpcaccess.delete")
def _complete_delete(sim: Sim, op: dict[str, Any]) -> None:
    conn = sim.store.get("vpcaccess", op["ctx"]["connector"])
    if conn is None:
        operations.finish(sim, op, result={})
        return
    before = conn["_sim"].pop("before", public(conn))
    if op["fail"]:
        conn["state"] = before["state"]  # READY, or ERROR for a connector that never got created
        sim.store.put("vpcaccess", conn["name"], conn)
        operations.fail(sim, op)
        return
    sim.store.delete("vpcaccess", conn["name"])
    sim.log("vpcaccess", "DELETE", conn["name"], before, None, at=op["due"], operation=op["name"])
    operations.finish(sim, op, result={})


def render_op(sim: Sim, op: dict[str, Any]) -> dict[str, Any]:
    ctx = op["ctx"]
    metadata: dict[str, Any] = {"@type": OP_METADATA, "method": ctx["method"], "createTime": sim.iso(op["created"]),
                                "target": ctx["connector"]}
    out: dict[str, Any] = {"name": op["name"], "metadata": metadata, "done": op["done"]}
    if op["done"]:
        metadata["endTime"] = sim.iso(op.get("ended", op["created"]))
        if op.get("error"):
            out["error"] = op["error"]
        elif op["kind"] == "vpcaccess.delete":
            out["response"] = {"@type": EMPTY_TYPE}
        else:
            out["response"] = {"@type": CONNECTOR_TYPE, **(op.get("result") or {})}
    return out


@router.get("/v1/projects/{p}/locations/{l}/operations/{o}")
async def get_operation(p: str, l: str, o: str, request: Request):
    sim = get_sim(request)
    return render_op(sim, operations.get_or_404(sim, f"{_parent(sim, p, l)}/operations/{o}", "vpcaccess",
                                                f"Operation {o}"))


@router.get("/v1/projects/{p}/locations/{l}/operations")
async def list_operations(p: str, l: str, request: Request):
    sim = get_sim(request)
    ops = sim.store.ops_list("vpcaccess", _parent(sim, p, l) + "/operations/")
    return paged(ops, request, "operations", lambda o: render_op(sim, o))
