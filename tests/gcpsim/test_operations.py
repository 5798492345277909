"""The generic operation machinery, in process: a completer that raises must not break
settling (which runs before every request) for every later request."""
from __future__ import annotations

import logging

from gcpsim import operations
from gcpsim.clock import Clock
from gcpsim.context import Sim
from gcpsim.store import Store


@operations.completer("test.broken")
def _broken(sim: Sim, op: dict) -> None:
    sim.store.put("test", "things/half-done", {"name": "things/half-done"})
    raise RuntimeError("completer bug")


@operations.completer("test.fine")
def _fine(sim: Sim, op: dict) -> None:
    operations.finish(sim, op, result={"ok": True})


def test_a_failing_completer_ends_its_operation_with_internal(tmp_path, caplog):
    store = Store(tmp_path / "gcpsim.sqlite3")
    sim = Sim(store, Clock(store, speed=1.0))
    operations.create(sim, api="test", kind="test.broken", name="ops/broken", duration=0, ctx={})
    operations.create(sim, api="test", kind="test.fine", name="ops/fine", duration=0, ctx={})
    with caplog.at_level(logging.ERROR, logger="gcpsim"):
        assert operations.settle(sim) == 2
    broken = store.op_get("ops/broken")
    assert broken["done"] and broken["error"]["code"] == 13 and broken["result"] is None
    assert store.get("test", "things/half-done") is None  # its partial change was rolled back
    assert store.op_get("ops/fine")["result"] == {"ok": True}  # later operations still complete
    assert "ops/broken" in caplog.text and "completer bug" in caplog.text
    assert operations.settle(sim) == 0  # finished: it is not retried on every request
