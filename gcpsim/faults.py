"""Injected faults: registry, matching and bookkeeping.

A fault matches a call when each of its optional fields matches: ``api`` (run,
vpcaccess, sqladmin, compute, secretmanager, monitoring, redis, app), ``method`` (HTTP verb)
and ``resource`` (a substring of the request path). Counted kinds fire ``count`` times
and then stay listed as exhausted; ``sql_maintenance`` lasts until the faults are
cleared. Every firing increments ``fired`` so tests can prove a fault was exercised.
"""
from __future__ import annotations

import re
from typing import Any

from .errors import GoogleError, invalid
from .store import Store

KINDS = {
    "http",                    # the next N matching calls answer `status` with a Google error
    "operation_error",         # the next matching operation ends in error
    "operation_hang",          # the next matching operation never finishes
    "sql_maintenance",         # instance shows MAINTENANCE and refuses patches (409) until cleared
    "revision_start_failure",  # the next new revision of a matching service fails to start
    "app_503",                 # the next N application requests answer 503
}
APIS = {"run", "vpcaccess", "sqladmin", "compute", "secretmanager", "monitoring", "redis", "app"}
UNCOUNTED = {"sql_maintenance"}

_SQL = re.compile(r"^/v1/(projects/[^/]+/(instances|operations|tiers)(/|$)|flags)")
_VPC = re.compile(r"^/v1/projects/[^/]+/locations/[^/]+/(connectors|operations)(/|$)|^/v1/projects/[^/]+/locations/?$")
_SECRETS = re.compile(r"^/v1/projects/[^/]+/secrets(/|$)")
_REDIS = re.compile(r"^/v1/projects/[^/]+/locations/[^/]+/instances(/|$)")
APP_PATHS = ("/health", "/health/database", "/health/redis", "/auth/health", "/ws")


def api_of(path: str) -> str | None:
    """Which simulated API a request path belongs to (None for /_sim/ and unknown)."""
    if path.startswith("/_sim"):
        return None
    if path.startswith("/v2/"):
        return "run"
    if path.startswith("/compute/v1/"):
        return "compute"
    if path.startswith("/v3/"):
        return "monitoring"
    if _VPC.match(path):
        return "vpcaccess"
    if _SQL.match(path):
        return "sqladmin"
    if _SECRETS.match(path):
        return "secretmanager"
    if _REDIS.match(path):
        return "redis"
    if path in APP_PATHS:
        return "app"
    return None


FIELDS = {"kind", "api", "method", "resource", "message", "status", "reason", "code", "count"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_COUNT = 1_000_000
MAX_TEXT = 2000


def _int(spec: dict[str, Any], field: str, default: int, lo: int, hi: int) -> int:
    value = spec.get(field, default)
    if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{field} must be an integer", field)
    if not lo <= value <= hi:
        raise invalid(f"{field} must be between {lo} and {hi} (got {value})", field)
    return value


def _text(spec: dict[str, Any], field: str) -> str | None:
    """An optional string field; every fault is matched and rendered from these as text."""
    value = spec.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise invalid(f"{field} must be a string of at most {MAX_TEXT} characters", field)
    return value


def validate(spec: dict[str, Any]) -> dict[str, Any]:
    """The fault to store for an admin request, or 400 naming the first bad field: a fault
    that cannot be matched or rendered must never reach the store (every call consults it)."""
    unknown = sorted(set(spec) - FIELDS)
    if unknown:
        raise invalid(f"{unknown[0]}: unknown field; a fault has {sorted(FIELDS)}", unknown[0])
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise invalid(f"fault kind must be one of {sorted(KINDS)}", "kind")
    api = spec.get("api")
    if api is not None and (not isinstance(api, str) or api not in APIS):
        raise invalid(f"fault api must be one of {sorted(APIS)}", "api")
    method = _text(spec, "method")
    if method is not None and method.upper() not in METHODS:
        raise invalid(f"fault method must be one of {list(METHODS)}", "method")
    fault: dict[str, Any] = {
        "kind": kind,
        "api": api,
        "method": method and method.upper(),
        "resource": _text(spec, "resource"),
        "message": _text(spec, "message"),
        "fired": 0,
    }
    if kind == "http":
        status = _int(spec, "status", 503, 400, 599)
        if status == 401:
            raise invalid("status 401 is not allowed: anonymous credentials cannot refresh", "status")
        fault["status"] = status
        fault["reason"] = _text(spec, "reason")
    if kind == "operation_error":
        fault["code"] = _int(spec, "code", 13, 1, 16)  # a google.rpc.Code other than OK
    if kind not in UNCOUNTED:
        count = _int(spec, "count", 1, 1, MAX_COUNT)
        fault["count"] = count
        fault["remaining"] = count
    return fault


def _matches(fault: dict[str, Any], api: str | None, method: str | None, path: str) -> bool:
    if fault.get("api") and fault["api"] != api:
        return False
    if fault.get("method") and method and fault["method"] != method.upper():
        return False
    if fault.get("resource") and fault["resource"] not in path:
        return False
    return True


def take(store: Store, kind: str, api: str | None, method: str | None, path: str) -> dict[str, Any] | None:
    """Consume one firing of the first live matching fault of ``kind`` (or None)."""
    for fault in store.faults():
        if fault["kind"] != kind or not _matches(fault, api, method, path):
            continue
        if kind not in UNCOUNTED and fault.get("remaining", 0) <= 0:
            continue
        if kind not in UNCOUNTED:
            fault["remaining"] -= 1
        fault["fired"] += 1
        store.fault_put(fault)
        return fault
    return None


def active(store: Store, kind: str, api: str | None, path: str) -> dict[str, Any] | None:
    """A matching standing (uncounted) fault of ``kind``, without consuming it."""
    return next((f for f in store.faults() if f["kind"] == kind and _matches(f, api, None, path)), None)


def record_fire(store: Store, fault: dict[str, Any]) -> None:
    fault["fired"] += 1
    store.fault_put(fault)


def http_error(fault: dict[str, Any]) -> GoogleError:
    status = fault["status"]
    message = fault.get("message") or f"Injected fault: HTTP {status}"
    return GoogleError(status, message, reason=fault.get("reason"))
