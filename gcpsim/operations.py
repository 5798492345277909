"""Generic long-running operations that progress with simulated time.

An operation record is API-neutral: ``created``/``due`` in simulated seconds, ``done``,
an ``error`` (google.rpc.Status) or a ``result`` snapshot, and a ``kind`` naming the
completer that applies its effect. Each API module registers completers with
:func:`completer` and renders the record in its own wire shape.

Faults are consumed when an operation is created: ``operation_hang`` gives it no due
time (it never finishes), ``operation_error`` marks it to fail when it comes due (the
completer decides what a failure leaves behind, usually: nothing changed).
:func:`settle` runs before every request and on clock advances.
"""
from __future__ import annotations

import uuid
from typing import Any, Callable

from . import faults
from .context import Sim

Completer = Callable[[Sim, dict[str, Any]], None]
_COMPLETERS: dict[str, Completer] = {}


def completer(kind: str) -> Callable[[Completer], Completer]:
    def register(fn: Completer) -> Completer:
        _COMPLETERS[kind] = fn
        return fn

    return register


def new_id() -> str:
    return str(uuid.uuid4())


def create(
    sim: Sim,
    *,
    api: str,
    kind: str,
    name: str,
    duration: float,
    ctx: dict[str, Any],
    method: str,
    path: str,
    internal: bool = False,
) -> dict[str, Any]:
    """Create a pending operation due ``duration`` simulated seconds from now."""
    now = sim.now()
    op: dict[str, Any] = {
        "name": name,
        "api": api,
        "kind": kind,
        "created": now,
        "due": now + duration,
        "done": False,
        "ctx": ctx,
        "error": None,
        "result": None,
        "fail": None,
        "hang": False,
        "internal": internal,
    }
    if not internal:
        if faults.take(sim.store, "operation_hang", api, method, path):
            op["due"] = None
            op["hang"] = True
        else:
            fault = faults.take(sim.store, "operation_error", api, method, path)
            if fault:
                op["fail"] = {
                    "code": fault.get("code", 13),
                    "message": fault.get("message") or "Injected fault: the operation failed.",
                }
    sim.store.op_put(op)
    return op


def create_done(sim: Sim, *, api: str, kind: str, name: str, ctx: dict[str, Any], result: Any) -> dict[str, Any]:
    """An operation that is finished when returned (no-op changes, validateOnly)."""
    now = sim.now()
    op = {
        "name": name, "api": api, "kind": kind, "created": now, "due": now, "done": True,
        "ctx": ctx, "error": None, "result": result, "fail": None, "hang": False, "internal": False,
        "ended": now,
    }
    sim.store.op_put(op)
    return op


def finish(sim: Sim, op: dict[str, Any], *, result: Any = None, error: dict[str, Any] | None = None) -> None:
    op["done"] = True
    op["ended"] = op["due"] if op.get("due") is not None else sim.now()
    op["result"] = result
    op["error"] = error
    sim.store.op_put(op)


def settle(sim: Sim) -> int:
    """Complete every operation whose due time has passed, in due order."""
    completed = 0
    while True:
        due = sim.store.ops_due(sim.now())
        if not due:
            return completed
        for op in due:
            with sim.store.transaction():
                _COMPLETERS[op["kind"]](sim, op)
                if not op["done"]:
                    finish(sim, op, result=op.get("result"), error=op.get("error"))
            completed += 1
