"""Checks that a world handed to ``POST /_sim/reset`` can be served before it replaces the
stored one. Every request reads the world (projects, the app model, operations), so a
malformed one would make every later call fail: the shape is checked first, then, inside
the loading transaction, the health model and the state dump are computed once; any error
refuses the world and the transaction leaves the previous world in place.

Records of each API are checked for shape only (an object per full resource name); their
fields are the API's own and are read by the API modules as they serve them.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from .errors import GoogleError, invalid

TOP_LEVEL = {"projects", "app", "dns"}
APP_FIELDS = {"routes", "database", "redis", "model"}
ROUTE_TEXT = ("service", "health_check", "backend_service")
ROUTE_NUMBERS = ("startup_seconds", "startup_saturated_extra_seconds", "internet_egress_mbps")
ROUTE_FLAGS = ("uses_database", "uses_redis")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_shape(world: dict[str, Any], apis: tuple[str, ...]) -> None:
    """400 naming the first part of ``world`` that does not have the state dump's shape."""
    unknown = sorted(set(world) - TOP_LEVEL - set(apis))
    if unknown:
        raise invalid(f"world: unknown section '{unknown[0]}'; a world has {sorted(TOP_LEVEL | set(apis))}.",
                      unknown[0])
    projects = world.get("projects")
    if not isinstance(projects, list) or not projects:
        raise invalid("world: 'projects' must list at least one {projectId, projectNumber}.", "projects")
    for i, project in enumerate(projects):
        if not isinstance(project, dict) or not all(isinstance(project.get(k), str) and project[k]
                                                    for k in ("projectId", "projectNumber")):
            raise invalid(f"world: projects[{i}] must be {{\"projectId\": str, \"projectNumber\": str}}.",
                          f"projects[{i}]")
    dns = world.get("dns", {})
    if not isinstance(dns, dict) or not all(isinstance(v, str) for v in dns.values()):
        raise invalid("world: 'dns' must map host names to IPv4 addresses.", "dns")
    _check_app(world.get("app", {}))
    for api in apis:
        records = world.get(api) or {}
        if not isinstance(records, dict):
            raise invalid(f"world: '{api}' must map full resource names to records.", api)
        for name, rec in records.items():
            if not isinstance(rec, dict) or "/" not in name:
                raise invalid(f"world: {api}['{name[:120]}'] must be an object keyed by its full resource name.",
                              api)
            if not isinstance(rec.get("_sim", {}), dict):
                raise invalid(f"world: {api}['{name[:120]}']._sim must be an object.", api)


def _check_app(app: Any) -> None:
    if not isinstance(app, dict):
        raise invalid("world: 'app' must be an object {routes, database, redis, model}.", "app")
    unknown = sorted(set(app) - APP_FIELDS)
    if unknown:
        raise invalid(f"world: app.{unknown[0]} is not a field; app has {sorted(APP_FIELDS)}.", f"app.{unknown[0]}")
    for field in ("database", "redis"):
        if app.get(field) is not None and not isinstance(app[field], str):
            raise invalid(f"world: app.{field} must be a resource name.", f"app.{field}")
    model = app.get("model", {})
    if not isinstance(model, dict) or not all(_number(v) for v in model.values()):
        raise invalid("world: app.model must map parameter names to finite numbers.", "app.model")
    routes = app.get("routes", {})
    if not isinstance(routes, dict):
        raise invalid("world: app.routes must map route ids to routes.", "app.routes")
    for rid, route in routes.items():
        where = f"app.routes.{rid}"
        if not isinstance(route, dict) or not isinstance(route.get("service"), str):
            raise invalid(f"world: {where} must be an object naming its Cloud Run 'service'.", where)
        for field in ROUTE_TEXT:
            if field in route and not isinstance(route[field], str):
                raise invalid(f"world: {where}.{field} must be a resource name.", f"{where}.{field}")
        for field in ROUTE_NUMBERS:
            if field in route and not (_number(route[field]) and route[field] >= 0):
                raise invalid(f"world: {where}.{field} must be a number >= 0.", f"{where}.{field}")
        for field in ROUTE_FLAGS:
            if field in route and not isinstance(route[field], bool):
                raise invalid(f"world: {where}.{field} must be true or false.", f"{where}.{field}")
        paths = route.get("paths", [])
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise invalid(f"world: {where}.paths must list URL paths.", f"{where}.paths")


def refuse_unless_servable(replace: Callable[[], None]) -> None:
    """Run ``replace`` (load the world, then compute what every request computes) inside the
    loading transaction: any error it raises refuses the world with 400."""
    try:
        replace()
    except GoogleError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means the world cannot be served
        raise invalid(f"world: the simulator cannot serve this world ({type(exc).__name__}: {str(exc)[:300]}).",
                      "world") from exc
