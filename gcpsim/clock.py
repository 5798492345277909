"""Simulated time: real elapsed time x speed, plus manual advances; persisted.

The clock is stored as an anchor pair (simulated seconds, real wall-clock seconds).
``now = anchor_sim + (time.time() - anchor_real) * speed``. Advancing moves the anchor,
and a restart re-anchors at the persisted "now", so simulated time never goes backwards
and operations due during downtime complete on the first request after the restart.
Simulated time starts at the real wall-clock time of the first start, so timestamps
look like real ones.
"""
from __future__ import annotations

import logging
import math
import re
import time
from datetime import datetime, timedelta, timezone

from .store import Store

# Manual advances may move simulated time at most this far in total (10 years): every
# timestamp stays far inside what RFC 3339 and Python's datetime can render, so no advance
# can leave the simulator unable to answer (or to restart on the same data dir).
MAX_ADVANCE_SECONDS = 10 * 365.25 * 86400.0
log = logging.getLogger("gcpsim")


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
            if not renderable(sim_now):
                # Only a data dir written before advances were bounded can hold such a clock:
                # every timestamp would fail to render, so start again from real time.
                log.warning("persisted simulated clock %r cannot be rendered; re-anchoring at real time", sim_now)
                sim_now = real
            state = {"anchor_sim": sim_now, "anchor_real": real, "speed": speed,
                     "advanced": state.get("advanced", 0.0)}
        self._state = state
        store.meta_set("clock", state)

    @property
    def speed(self) -> float:
        return float(self._state["speed"])

    def now(self) -> float:
        s = self._state
        return s["anchor_sim"] + (time.time() - s["anchor_real"]) * s["speed"]

    def advance_room(self) -> float:
        """How many more simulated seconds manual advances may add (MAX_ADVANCE_SECONDS)."""
        return max(0.0, MAX_ADVANCE_SECONDS - float(self._state.get("advanced", 0.0)))

    def advance(self, seconds: float) -> float:
        if not 0 <= seconds <= self.advance_room():  # also false for NaN
            raise ValueError(f"cannot advance the simulated clock by {seconds!r} s")
        self._state["anchor_sim"] += seconds
        self._state["advanced"] = float(self._state.get("advanced", 0.0)) + seconds
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


def renderable(t: float) -> bool:
    """Whether ``t`` (epoch seconds) is a time :func:`iso` can write (years 1-9999)."""
    try:
        return math.isfinite(t) and datetime.fromtimestamp(t, tz=timezone.utc).year < 9999
    except (OverflowError, OSError, ValueError):
        return False


_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})")
# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_MIN_TS = datetime(1, 1, 1, tzinfo=timezone.utc)
_MAX_TS = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)


def parse_rfc3339(raw: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp as Google APIs take it (a ``T``, seconds, an
    optional fraction of up to 9 digits, and ``Z`` or an offset), within the range of
    google.protobuf.Timestamp. ValueError (saying why) for anything else."""
    m = _RFC3339.fullmatch(raw)
    if not m:
        raise ValueError("not an RFC 3339 timestamp like '2024-05-01T12:00:00Z'")
    fraction = (m.group(7) or ".0")[:7]  # datetime keeps microseconds
    text = f"{m.group(1)}-{m.group(2)}-{m.group(3)}T{m.group(4)}:{m.group(5)}:{m.group(6)}{fraction}"
    try:
        local = datetime.fromisoformat(text)
        offset = m.group(8).upper().replace("Z", "+00:00")
        parsed = datetime.fromisoformat(text + offset)
    except ValueError as exc:
        raise ValueError(f"not a valid date and time ({exc})") from exc
    # Compare in UTC without converting near the edges (year 1 minus an offset overflows).
    utc = parsed.utcoffset() or timedelta(0)
    if local - _MIN_TS.replace(tzinfo=None) < utc or _MAX_TS.replace(tzinfo=None) - local < -utc:
        raise ValueError("outside the range of google.protobuf.Timestamp (0001-01-01T00:00:00Z to "
                         "9999-12-31T23:59:59Z)")
    return parsed.timestamp()
