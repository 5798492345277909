"""Simulated time: real elapsed time x speed, plus manual advances; persisted.

The clock is stored as an anchor pair (simulated seconds, real wall-clock seconds).
``now = anchor_sim + (time.time() - anchor_real) * speed``. Advancing moves the anchor,
and a restart re-anchors at the persisted "now", so simulated time never goes backwards
and operations due during downtime complete on the first request after the restart.
Simulated time starts at the real wall-clock time of the first start, so timestamps
look like real ones.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from .store import Store


class Clock:
    def __init__(self, store: Store, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.store = store
        state = store.meta_get("clock")
        real = time.time()
        if state is None:
            state = {"anchor_sim": real, "anchor_real": real, "speed": speed}
        else:
            # Carry on from the persisted clock (at its old speed), then switch speed.
            sim_now = state["anchor_sim"] + (real - state["anchor_real"]) * state["speed"]
            state = {"anchor_sim": sim_now, "anchor_real": real, "speed": speed}
        self._state = state
        store.meta_set("clock", state)

    @property
    def speed(self) -> float:
        return float(self._state["speed"])

    def now(self) -> float:
        s = self._state
        return s["anchor_sim"] + (time.time() - s["anchor_real"]) * s["speed"]

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the simulated clock cannot go backwards")
        self._state["anchor_sim"] += seconds
        self.store.meta_set("clock", self._state)
        return self.now()

    def real_seconds(self, sim_seconds: float) -> float:
        """How long a simulated duration takes in real time at the current speed."""
        return sim_seconds / self.speed

    def snapshot(self) -> dict:
        now = self.now()
        return {"now": iso(now), "epoch_seconds": now, "speed": self.speed}


def iso(t: float) -> str:
    """RFC 3339 UTC timestamp as protobuf JSON and Google APIs write it."""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
