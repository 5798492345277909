"""Generic long-running operations that progress with simulated time.

An operation record is API-neutral: ``created``/``due`` in simulated seconds, ``done``,
an ``error`` (google.rpc.Status) or a ``result`` snapshot, and a ``kind`` naming the
completer that applies its effect. Each API module registers completers with
:func:`completer` and renders the record in its own wire shape.

Faults are consumed when an operation is created: ``operation_hang`` gives it no due
time (it never finishes), ``operation_error`` stores the google.rpc.Status it ends with
in ``fail`` (the completer decides what a failure leaves behind, usually: nothing
changed, see :func:`fail`). :func:`settle` runs before every request and on clock advances.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Callable

from . import faults
from .context import Sim
from .errors import grpc_status, not_found

log = logging.getLogger("gcpsim")
Completer = Callable[[Sim, dict[str, Any]], None]
_COMPLETERS: dict[str, Completer] = {}


def completer(kind: str) -> Callable[[Completer], Completer]:
    """Register the function that applies a ``kind`` operation when it comes due; it
    must end the operation with :func:`finish` or :func:`fail`."""
    def register(fn: Completer) -> Completer:
        _COMPLETERS[kind] = fn
        return fn

    return register


def new_id() -> str:
    return str(uuid.uuid4())


def build(sim: Sim, *, api: str, kind: str, name: str, ctx: dict[str, Any], duration: float = 0.0,
          done: bool = False, result: Any = None) -> dict[str, Any]:
    """An operation record (not stored). A ``done`` one is finished now with ``result``."""
    now = sim.now()
    op: dict[str, Any] = {"name": name, "api": api, "kind": kind, "created": now, "due": now + duration,
                          "done": done, "ctx": ctx, "error": None, "result": result, "fail": None}
    if done:
        op["ended"] = now
    return op


def create(sim: Sim, *, api: str, kind: str, name: str, duration: float, ctx: dict[str, Any],
           method: str | None = None, path: str | None = None) -> dict[str, Any]:
    """Store a pending operation due ``duration`` simulated seconds from now.

    ``method``/``path`` are those of the client request that started it; they decide
    which faults apply. Internal timers (no request) draw no faults."""
    op = build(sim, api=api, kind=kind, name=name, ctx=ctx, duration=duration)
    if path is not None:
        if faults.take(sim.store, "operation_hang", api, method, path):
            op["due"] = None
        else:
            fault = faults.take(sim.store, "operation_error", api, method, path)
            if fault:
                op["fail"] = grpc_status(fault.get("code", 13),
                                         fault.get("message") or "Injected fault: the operation failed.")
    sim.store.op_put(op)
    return op


def create_done(sim: Sim, *, api: str, kind: str, name: str, ctx: dict[str, Any], result: Any) -> dict[str, Any]:
    """Store an operation that is finished when returned (no-op changes)."""
    op = build(sim, api=api, kind=kind, name=name, ctx=ctx, done=True, result=result)
    sim.store.op_put(op)
    return op


def finish(sim: Sim, op: dict[str, Any], *, result: Any = None, error: dict[str, Any] | None = None) -> None:
    op["done"] = True
    op["ended"] = op["due"] if op.get("due") is not None else sim.now()
    op["result"] = result
    op["error"] = error
    sim.store.op_put(op)


def fail(sim: Sim, op: dict[str, Any]) -> None:
    """End an operation with the error its ``operation_error`` fault decided."""
    finish(sim, op, error=op["fail"])


def get_or_404(sim: Sim, name: str, api: str, what: str) -> dict[str, Any]:
    op = sim.store.op_get(name)
    if op is None or op["api"] != api:
        raise not_found(what)
    return op


async def wait(sim: Sim, name: str, api: str, what: str, real_timeout: float) -> dict[str, Any]:
    """The operation once it is done, or as it stands after ``real_timeout`` real seconds."""
    deadline = asyncio.get_running_loop().time() + real_timeout
    while True:
        settle(sim)
        op = get_or_404(sim, name, api, what)
        if op["done"] or asyncio.get_running_loop().time() >= deadline:
            return op
        await asyncio.sleep(0.05)


def settle(sim: Sim) -> int:
    """Complete every operation whose due time has passed, in due order."""
    completed = 0
    while True:
        due = sim.store.ops_due(sim.now())
        if not due:
            return completed
        for op in due:
            try:
                with sim.store.transaction():
                    _COMPLETERS[op["kind"]](sim, op)
            except Exception:  # noqa: BLE001 - one broken operation must not fail every later request
                # Its changes were rolled back; ending it stops settle from retrying it forever.
                log.exception("completing operation %s (%s) failed", op["name"], op["kind"])
                finish(sim, sim.store.op_get(op["name"]),
                       error=grpc_status(13, "Internal simulator error while completing the operation."))
            completed += 1
