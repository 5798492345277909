"""Cloud Monitoring v3: alert policies create/list/get/patch/delete, notification channels
list/get, metric descriptors create/list/get. ``timeSeries.list`` lives in
:mod:`gcpsim.time_series`; which metrics exist and which aligners fit them in
:mod:`gcpsim.metric_catalog`.

Changes are synchronous in the real API, so mutations are logged at acceptance.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from fastapi import APIRouter, Request

from . import body_schema, metric_catalog
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


def validate_policy(sim: Sim, policy: dict[str, Any], project: str) -> None:
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
            # A4/A5: the metric must exist and each aligner must fit its kind and value type.
            metric_catalog.validate_condition(sim, project, body, f"{field}.{kinds[0]}")
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
    raw = await read_json(request)
    body_schema.check_body("monitoring.v3", "AlertPolicy", raw)
    body = {k: v for k, v in raw.items() if k not in OUTPUT_ONLY}
    project = sim.project_id(p)
    validate_policy(sim, body, project)
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
    body_schema.check_body("monitoring.v3", "AlertPolicy", body)
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
    validate_policy(sim, new, sim.project_id(p))
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


# ---- metric descriptors (custom metrics exist once a descriptor does) -------------------
@router.post("/v3/projects/{p}/metricDescriptors")
async def create_descriptor(p: str, request: Request):
    sim = get_sim(request)
    body = await read_json(request)
    body_schema.check_body("monitoring.v3", "MetricDescriptor", body)
    project = sim.project_id(p)
    metric_type = body.get("type")
    if not isinstance(metric_type, str) or not metric_type.startswith(metric_catalog.CUSTOM_PREFIXES):
        raise invalid(f"type: '{metric_type}' must start with one of {list(metric_catalog.CUSTOM_PREFIXES)}.", "type")
    if body.get("metricKind") not in metric_catalog.KINDS:
        raise invalid(f"metricKind: one of {list(metric_catalog.KINDS)} is required.", "metricKind")
    if body.get("valueType") not in metric_catalog.VALUE_TYPES:
        raise invalid(f"valueType: one of {list(metric_catalog.VALUE_TYPES)} is required.", "valueType")
    name = metric_catalog.descriptor_key(project, metric_type)
    desc = {k: v for k, v in body.items() if k != "name"} | {"name": name}
    current = sim.store.get("monitoring", name)
    if current != desc:
        with sim.store.transaction():
            sim.store.put("monitoring", name, desc)
            sim.log("monitoring", "POST", name, current, desc)
    return desc


@router.get("/v3/projects/{p}/metricDescriptors")
async def list_descriptors(p: str, request: Request):
    sim = get_sim(request)
    project = sim.project_id(p)
    items = [metric_catalog.builtin_descriptor(project, t) for t in sorted(metric_catalog.BUILTIN)]
    items += [public(d) for d in sim.store.list("monitoring", None, f"projects/{project}/metricDescriptors/")]
    flt = request.query_params.get("filter")
    if flt:
        m = re.fullmatch(r'\s*metric\.type\s*=\s*"([^"]+)"\s*', flt)
        if not m:
            raise invalid(f"filter: the simulator supports only metric.type = \"...\" (got '{flt}').", "filter")
        items = [d for d in items if d["type"] == m.group(1)]
    return paged(items, request, "metricDescriptors")


@router.get("/v3/projects/{p}/metricDescriptors/{metric_type:path}")
async def get_descriptor(p: str, metric_type: str, request: Request):
    sim = get_sim(request)
    project = sim.project_id(p)
    metric_catalog.require(sim, project, metric_type)  # 404 for a type that does not exist
    stored = sim.store.get("monitoring", metric_catalog.descriptor_key(project, metric_type))
    return public(stored) if stored else metric_catalog.builtin_descriptor(project, metric_type)
