"""The simulator's own control API under ``/_sim/`` (used by tests and other engineers)."""
from __future__ import annotations

from fastapi import APIRouter, Request

from . import faults, health_model, operations, world
from .clock import MAX_ADVANCE_SECONDS
from .errors import invalid
from .http_util import get_sim, read_json

router = APIRouter(prefix="/_sim")


@router.get("/healthz")
async def healthz():
    return {"ok": True}


@router.get("/state")
async def state(request: Request):
    return world.dump(get_sim(request))


@router.post("/reset")
async def reset(request: Request):
    """Restore a built-in world (no body: ``serverless``; ``{"world": "instance-group"}``),
    or seed the world given in the body (state shape, recognised by ``projects``)."""
    sim = get_sim(request)
    body = await read_json(request, allow_private=True)  # a dumped world carries its bookkeeping
    if "projects" in body:
        world.load(sim, body)
        return {"ok": True, "world": "custom"}
    unknown = sorted(set(body) - {"world"})
    if unknown:
        raise invalid(f"{unknown[0]}: unknown field; send {{\"world\": NAME}} or a whole world (with "
                      "'projects').", unknown[0])
    name = body.get("world", "serverless")
    if not isinstance(name, str):
        raise invalid(f"world: must be one of {list(world.WORLDS)}.", "world")
    world.load(sim, world.build_world(sim, name))
    return {"ok": True, "world": name}


@router.get("/mutations")
async def mutations(request: Request):
    try:
        since = int(request.query_params.get("since", 0))
    except ValueError as exc:
        raise invalid("since must be an integer sequence number.", "since") from exc
    return {"mutations": get_sim(request).store.mutations(since)}


@router.get("/faults")
async def list_faults(request: Request):
    return {"faults": get_sim(request).store.faults()}


@router.post("/faults")
async def add_fault(request: Request):
    sim = get_sim(request)
    fault = faults.validate(await read_json(request))
    fault["created"] = sim.iso()
    fault_id = sim.store.fault_add(fault)
    return fault | {"id": fault_id}


@router.delete("/faults")
async def clear_faults(request: Request):
    get_sim(request).store.faults_clear()
    return {"ok": True}


@router.get("/clock")
async def clock(request: Request):
    return get_sim(request).clock.snapshot()


@router.post("/clock/advance")
async def advance(request: Request):
    sim = get_sim(request)
    body = await read_json(request)
    unknown = sorted(set(body) - {"seconds"})
    if unknown:
        raise invalid(f"{unknown[0]}: unknown field; send {{\"seconds\": N}}.", unknown[0])
    seconds = body.get("seconds", 0)
    # read_json already refused NaN and Infinity; strings and booleans are not numbers here.
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise invalid(f"seconds: {str(seconds)[:80]!r} is not a number.", "seconds")
    if seconds < 0:
        raise invalid("seconds: must be >= 0: simulated time never goes backwards.", "seconds")
    room = sim.clock.advance_room()
    if seconds > room:
        raise invalid(f"seconds: {seconds:g} would take the simulated clock past its bound "
                      f"({MAX_ADVANCE_SECONDS:g} s of advances in total; {room:g} s left).", "seconds")
    sim.clock.advance(float(seconds))
    completed = operations.settle(sim)
    return sim.clock.snapshot() | {"operations_completed": completed}


@router.get("/app")
async def app_figures(request: Request):
    return health_model.compute(get_sim(request))


@router.get("/operations")
async def list_operations(request: Request):
    """Every operation record (debugging aid; includes internal timers)."""
    return {"operations": get_sim(request).store.ops_all()}
