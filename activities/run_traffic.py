"""Cloud Run traffic targets: what a service's ``traffic`` and ``trafficStatuses`` say,
and the traffic a rollback sends (GCP_FIDELITY A10: route back to the revisions that
served, while they exist)."""

from __future__ import annotations

from typing import Any

from activities.clients import short

LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


def traffic_of(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(t) for t in svc.get("traffic", [])] or [{"type": LATEST, "percent": 100}]


def pinned_traffic(rec: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The recorded traffic pinned to revisions: a LATEST entry becomes the recorded
    ``latestReadyRevision`` (what it resolved to then); None if that is unknown."""
    out: list[dict[str, Any]] = []
    for t in rec.get("traffic", []):
        rev = rec.get("latestReadyRevision") if t.get("type", LATEST) == LATEST \
            else short(t.get("revision", ""))
        if not rev:
            return None
        same = next((o for o in out if o["revision"] == rev and not o.get("tag")
                     and not t.get("tag")), None)
        if same is not None:  # LATEST and a named entry on one revision: one target
            same["percent"] += int(t.get("percent", 0))
            continue
        entry = {"type": REVISION, "revision": rev, "percent": int(t.get("percent", 0))}
        if t.get("tag"):
            entry["tag"] = t["tag"]
        out.append(entry)
    return out or None


def shares(entries: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in entries:
        if t.get("revision") and int(t.get("percent", 0)) > 0:
            out[short(t["revision"])] = out.get(short(t["revision"]), 0) + int(t["percent"])
    return out


def routed_as(svc: dict[str, Any], wanted: list[dict[str, Any]]) -> bool:
    """The service's traffic is pinned to ``wanted`` and ``trafficStatuses`` shows exactly
    those revisions serving those percentages."""
    spec = svc.get("traffic", [])
    pinned = all(t.get("type") == REVISION for t in spec) and \
        sorted((short(t.get("revision", "")), int(t.get("percent", 0)), t.get("tag", ""))
               for t in spec) == \
        sorted((t["revision"], t["percent"], t.get("tag", "")) for t in wanted)
    return pinned and shares(svc.get("trafficStatuses", [])) == shares(wanted)


def redeploy_traffic(rec: dict[str, Any], existing: set[str]) -> list[dict[str, Any]]:
    """Traffic for a redeploy of the recorded template: revisions that still exist keep
    their share; LATEST and every share of a deleted revision go to LATEST, which is the
    redeployed template's new revision once it is ready."""
    out: list[dict[str, Any]] = []
    latest = 0
    for t in rec.get("traffic", []):
        rev = short(t.get("revision", ""))
        if t.get("type", LATEST) == LATEST or rev not in existing:
            latest += int(t.get("percent", 0))
        else:
            out.append(dict(t))
    if latest or not out:
        out.insert(0, {"type": LATEST, "percent": latest or 100})
    return out


def shown(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r} {p}%" for r, p in shares(entries).items())
