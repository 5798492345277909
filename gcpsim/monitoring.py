"""Cloud Monitoring v3: alert policies create/list/get/patch/delete, notification channels list,
and ``timeSeries.list`` for two metrics answered from the health model.

Changes are synchronous in the real API, so mutations are logged at acceptance.
"""
from __future__ import annotations

import copy
import math
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request

from . import health_model
from .context import ACTOR, Sim, public
from .errors import invalid
from .http_util import get_sim, paged, read_json
from .run_model import camel

router = APIRouter()
CONDITION_KINDS = ("conditionThreshold", "conditionAbsent", "conditionMatchedLog",
                   "conditionMonitoringQueryLanguage", "conditionPrometheusQueryLanguage", "conditionSql")
# Tuples, not sets: membership compares by equality, so a value that is not hashable (a
# list) is refused as INVALID_ARGUMENT instead of raising TypeError.
COMPARISONS = ("COMPARISON_GT", "COMPARISON_GE", "COMPARISON_LT", "COMPARISON_LE", "COMPARISON_EQ",
               "COMPARISON_NE")
COMBINERS = ("AND", "OR", "AND_WITH_MATCHING_RESOURCE")
SEVERITIES = ("CRITICAL", "ERROR", "WARNING", "SEVERITY_UNSPECIFIED")
OUTPUT_ONLY = {"name", "creationRecord", "mutationRecord"}


def _seconds(value: Any, field: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(value))
    if not m:
        raise invalid(f"{field}: '{value}' is not a duration like '300s'.", field)
    return float(m.group(1))


def validate_policy(sim: Sim, policy: dict[str, Any]) -> None:
    if not policy.get("displayName"):
        raise invalid("displayName: an alert policy needs a display name.", "displayName")
    conditions = policy.get("conditions") or []
    if not isinstance(conditions, list) or not conditions:
        raise invalid("conditions: at least one condition is required.", "conditions")
    if len(conditions) > 1 and policy.get("combiner") not in COMBINERS:
        raise invalid(f"combiner: required with several conditions; one of {sorted(COMBINERS)}.", "combiner")
    if "combiner" in policy and policy["combiner"] not in COMBINERS:
        raise invalid(f"combiner: '{policy['combiner']}' is not one of {sorted(COMBINERS)}.", "combiner")
    if "severity" in policy and policy["severity"] not in SEVERITIES:
        raise invalid(f"severity: '{policy['severity']}' is not one of {sorted(SEVERITIES)}.", "severity")
    for i, cond in enumerate(conditions):
        field = f"conditions[{i}]"
        if not isinstance(cond, dict):
            raise invalid(f"{field}: must be an object.", field)
        kinds = [k for k in CONDITION_KINDS if k in cond]
        if len(kinds) != 1:
            raise invalid(f"{field}: exactly one condition type (e.g. conditionThreshold) is required.", field)
        if not cond.get("displayName"):
            raise invalid(f"{field}.displayName: required.", f"{field}.displayName")
        body = cond[kinds[0]]
        if not isinstance(body, dict):
            raise invalid(f"{field}.{kinds[0]}: must be an object.", f"{field}.{kinds[0]}")
        if kinds[0] in ("conditionThreshold", "conditionAbsent"):
            if not body.get("filter"):
                raise invalid(f"{field}.{kinds[0]}.filter: required.", f"{field}.{kinds[0]}.filter")
            secs = _seconds(body.get("duration", "0s"), f"{field}.{kinds[0]}.duration")
            if secs % 60:
                raise invalid(f"{field}.{kinds[0]}.duration: must be a whole number of minutes (got {secs:g}s).",
                              f"{field}.{kinds[0]}.duration")
        if kinds[0] == "conditionThreshold":
            if body.get("comparison") not in COMPARISONS:
                raise invalid(f"{field}.conditionThreshold.comparison: one of {sorted(COMPARISONS)} is required.",
                              f"{field}.conditionThreshold.comparison")
            if body.get("denominatorFilter") is not None and not body.get("denominatorAggregations"):
                raise invalid(f"{field}.conditionThreshold.denominatorAggregations: required with a "
                              "denominatorFilter.", f"{field}.conditionThreshold.denominatorAggregations")
    channels = policy.get("notificationChannels", [])
    if not isinstance(channels, list):
        raise invalid("notificationChannels: must be a list of channel names.", "notificationChannels")
    for i, channel in enumerate(channels):
        parts = str(channel).split("/")
        ok = len(parts) == 4 and parts[2] == "notificationChannels"
        ch_key = f"projects/{sim.project_id(parts[1])}/notificationChannels/{parts[3]}" if ok else ""
        if not ok or sim.store.get("monitoring", ch_key) is None:
            raise invalid(f"notificationChannels[{i}]: channel '{channel}' does not exist.",
                          f"notificationChannels[{i}]")


def _finish(sim: Sim, policy: dict[str, Any], name: str, created: dict[str, Any] | None) -> None:
    record = {"mutateTime": sim.iso(), "mutatedBy": ACTOR}
    policy["name"] = name
    policy["creationRecord"] = created or record
    policy["mutationRecord"] = record
    policy.setdefault("enabled", True)
    policy.setdefault("combiner", "OR")
    for cond in policy["conditions"]:
        if not str(cond.get("name", "")).startswith(name + "/conditions/"):
            cond["name"] = f"{name}/conditions/{sim.store.next_counter('monitoring.condition', 1000)}"


@router.post("/v3/projects/{p}/alertPolicies")
async def create_policy(p: str, request: Request):
    sim = get_sim(request)
    body = {k: v for k, v in (await read_json(request)).items() if k not in OUTPUT_ONLY}
    project = sim.project_id(p)
    validate_policy(sim, body)
    with sim.store.transaction():
        name = f"projects/{project}/alertPolicies/{sim.store.next_counter('monitoring.policy', 10**16)}"
        _finish(sim, body, name, None)
        sim.store.put("monitoring", name, body)
        sim.log("monitoring", "POST", name, None, body)
    return body


def _filter(items: list[dict[str, Any]], expr: str) -> list[dict[str, Any]]:
    """Monitoring filter subset: ``field = "v"``, ``!=``, ``:`` (has/contains) joined by AND;
    fields like display_name, displayName, type, enabled, user_labels.k / labels.k."""
    terms = [t for t in re.split(r"\s+AND\s+", expr.strip()) if t]
    parsed = []
    for term in terms:
        m = re.fullmatch(r'\s*([A-Za-z_.]+)\s*(=|!=|:)\s*"?([^"]*)"?\s*', term)
        if not m:
            raise invalid(f"filter: cannot parse '{term}'.", "filter")
        parsed.append(m.groups())

    def value(item: dict[str, Any], path: str) -> str:
        cur: Any = item
        for part in path.split("."):
            cur = cur.get(part, cur.get(camel(part))) if isinstance(cur, dict) else None
        return "" if cur is None else str(cur).lower() if isinstance(cur, bool) else str(cur)

    def ok(item: dict[str, Any]) -> bool:
        for field, op, want in parsed:
            got = value(item, field)
            if (op == "=" and got != want) or (op == "!=" and got == want) or (op == ":" and want not in got):
                return False
        return True

    return [i for i in items if ok(i)]


def _list(request: Request, p: str, collection: str) -> dict[str, Any]:
    """alertPolicies.list / notificationChannels.list: ``filter``, paging and ``totalSize``."""
    sim = get_sim(request)
    prefix = f"projects/{sim.project_id(p)}/{collection}/"
    items = [public(x) for x in sim.store.list("monitoring", collection, prefix)]
    if request.query_params.get("filter"):
        items = _filter(items, request.query_params["filter"])
    return paged(items, request, collection, totalSize=len(items))


@router.get("/v3/projects/{p}/alertPolicies")
async def list_policies(p: str, request: Request):
    return _list(request, p, "alertPolicies")


def _get(sim: Sim, p: str, a: str) -> dict[str, Any]:
    name = f"projects/{sim.project_id(p)}/alertPolicies/{a}"
    return sim.require("monitoring", name, f"Alert policy {name}")


@router.get("/v3/projects/{p}/alertPolicies/{a}")
async def get_policy(p: str, a: str, request: Request):
    return public(_get(get_sim(request), p, a))


@router.patch("/v3/projects/{p}/alertPolicies/{a}")
async def patch_policy(p: str, a: str, request: Request):
    sim = get_sim(request)
    body = await read_json(request)
    current = _get(sim, p, a)
    new = copy.deepcopy(current)
    mask = [camel(f.strip()) for f in request.query_params.get("updateMask", "").split(",") if f.strip()]
    for f in mask or [k for k in body if k not in OUTPUT_ONLY]:
        top = f.split(".")[0]
        if top in OUTPUT_ONLY:
            raise invalid(f"updateMask: '{f}' cannot be updated.", "updateMask")
        if top in body:
            new[top] = body[top]
        else:
            new.pop(top, None)
    validate_policy(sim, new)
    if new == current:
        return public(current)
    _finish(sim, new, current["name"], current["creationRecord"])
    with sim.store.transaction():
        sim.store.put("monitoring", current["name"], new)
        sim.log("monitoring", "PATCH", current["name"], current, new)
    return public(new)


@router.delete("/v3/projects/{p}/alertPolicies/{a}")
async def delete_policy(p: str, a: str, request: Request):
    sim = get_sim(request)
    current = _get(sim, p, a)
    with sim.store.transaction():
        sim.store.delete("monitoring", current["name"])
        sim.log("monitoring", "DELETE", current["name"], current, None)
    return {}


@router.get("/v3/projects/{p}/notificationChannels")
async def list_channels(p: str, request: Request):
    return _list(request, p, "notificationChannels")


@router.get("/v3/projects/{p}/notificationChannels/{c}")
async def get_channel(p: str, c: str, request: Request):
    sim = get_sim(request)
    return public(sim.require("monitoring", f"projects/{sim.project_id(p)}/notificationChannels/{c}",
                              f"Notification channel {c}"))


# --- time series (read-only, answered from the health model) ---------------------------

CONNECTOR_UTILISATION = "vpcaccess.googleapis.com/connector/cpu/utilizations"
SQL_BACKENDS = "cloudsql.googleapis.com/database/postgresql/num_backends"
_TERM = re.compile(r'\s*(?:AND\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*(=|!=)\s*"([^"]*)"\s*')
_LABEL_FIELD = re.compile(r"(resource|metric)\.labels?\.([A-Za-z0-9_]+)")
_UNSUPPORTED_PARAMS = ("aggregation.", "secondaryAggregation.")


def _parse_series_filter(expr: str) -> list[tuple[str, str, str]]:
    """``field = "v"`` / ``field != "v"`` terms joined by AND (explicit or implicit, as GCP
    accepts). Fields: metric.type, resource.type, resource.label(s).K, metric.label(s).K."""
    terms, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TERM.match(expr, pos)
        if not m or m.end() == pos:
            raise invalid(f"filter: cannot parse '{expr[pos:]}' (the simulator supports "
                          'field = "value" terms joined by AND).', "filter")
        field, op, value = m.groups()
        if field not in ("metric.type", "resource.type") and not _LABEL_FIELD.fullmatch(field):
            raise invalid(f"filter: unknown field '{field}'.", "filter")
        terms.append((field, op, value))
        pos = m.end()
    if sum(1 for f, op, _ in terms if f == "metric.type" and op == "=") != 1:
        raise invalid('filter: must specify exactly one metric type (metric.type = "...").', "filter")
    return terms


def _timestamp(request: Request, param: str, required: bool) -> float | None:
    raw = request.query_params.get(param)
    if not raw:
        if required:
            raise invalid(f"{param}: required.", param)
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise invalid(f"{param}: '{raw}' is not an RFC 3339 timestamp.", param) from exc
    if parsed.tzinfo is None:
        raise invalid(f"{param}: '{raw}' needs a time zone (e.g. 'Z').", param)
    return parsed.timestamp()


def _series(sim: Sim, project: str) -> list[dict[str, Any]]:
    """Every series the model can answer now (metric, resource, kind, value)."""
    figures = health_model.compute(sim)
    out: list[dict[str, Any]] = []
    vpc, db = figures["connector"], figures["database"]
    # A connector that is missing, CREATING, DELETING or in ERROR is not available: no data.
    if vpc.get("available") and vpc["name"].startswith(f"projects/{project}/"):
        parts = vpc["name"].split("/")
        out.append({"metric": {"type": CONNECTOR_UTILISATION, "labels": {}},
                    "resource": {"type": "vpc_access_connector",
                                 "labels": {"resource_container": project, "location": parts[3],
                                            "connector_name": parts[5]}},
                    "metricKind": "GAUGE", "valueType": "DOUBLE",
                    "value": {"doubleValue": vpc["utilisation"]}})
    inst = sim.store.get("sqladmin", db["instance"]) if db.get("instance") else None
    # An instance in MAINTENANCE (restarting) has no backends to count: no data.
    if db.get("available") and inst and inst.get("project") == project:
        in_use = math.ceil(min(db["demand_connections"], db["max_connections"]))
        out.append({"metric": {"type": SQL_BACKENDS, "labels": {}},
                    "resource": {"type": "cloudsql_database",
                                 "labels": {"project_id": project,
                                            "database_id": f"{project}:{inst['name']}",
                                            "region": inst.get("region", "")}},
                    "metricKind": "GAUGE", "valueType": "INT64",
                    "value": {"int64Value": str(in_use)}})
    return out


def _matches(series: dict[str, Any], terms: list[tuple[str, str, str]]) -> bool:
    for field, op, want in terms:
        if field in ("metric.type", "resource.type"):
            got = series[field.split(".")[0]]["type"]
        else:
            kind, key = _LABEL_FIELD.fullmatch(field).groups()
            got = series[kind]["labels"].get(key)
        if (op == "=") != (got == want):
            return False
    return True


@router.get("/v3/projects/{p}/timeSeries")
async def list_time_series(p: str, request: Request):
    """``projects.timeSeries.list``. The simulator keeps no history: each matching series has
    one point, the model's figure now, stamped at the simulated now clamped into the interval."""
    sim = get_sim(request)
    for param in request.query_params:
        if param.startswith(_UNSUPPORTED_PARAMS):
            raise invalid(f"{param}: aggregation is not supported by the simulator.", param)
    if not request.query_params.get("filter"):
        raise invalid("filter: required.", "filter")
    terms = _parse_series_filter(request.query_params["filter"])
    end = _timestamp(request, "interval.endTime", required=True)
    start = _timestamp(request, "interval.startTime", required=False)
    if start is not None and start > end:
        raise invalid("interval.startTime: must not be later than interval.endTime.", "interval.startTime")
    view = request.query_params.get("view", "FULL")
    if view not in ("FULL", "HEADERS"):
        raise invalid(f"view: '{view}' is not one of ['FULL', 'HEADERS'].", "view")
    stamp = sim.iso(min(max(sim.now(), end if start is None else start), end))
    items = []
    for series in _series(sim, sim.project_id(p)):
        if not _matches(series, terms):
            continue
        value = series.pop("value")
        if view == "FULL":
            series["points"] = [{"interval": {"startTime": stamp, "endTime": stamp}, "value": value}]
        items.append(series)
    out = paged(items, request, "timeSeries")
    return out if out["timeSeries"] else {}  # no data: an empty object, as GCP answers
