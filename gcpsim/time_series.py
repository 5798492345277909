"""Cloud Monitoring v3 ``timeSeries.list``, answered from the health model at simulated now.

The simulator keeps no history: each matching series has one point, the model's current
figure. A metric type that exists (see :mod:`gcpsim.metric_catalog`) but has no figures
answers ``{}`` like GCP; one that does not exist is 404 like an alert policy on it.
"""
from __future__ import annotations

import math
import re
from typing import Any

from fastapi import APIRouter, Request

from . import health_model, metric_catalog
from .clock import parse_rfc3339
from .context import Sim
from .errors import invalid
from .http_util import get_sim, paged

router = APIRouter()

CONNECTOR_UTILISATION = "vpcaccess.googleapis.com/connector/cpu/utilizations"
SQL_BACKENDS = "cloudsql.googleapis.com/database/postgresql/num_backends"
_TERM = re.compile(r'\s*(?:AND\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*(=|!=)\s*"([^"]*)"\s*')
_LABEL_FIELD = re.compile(r"(resource|metric)\.labels?\.([A-Za-z0-9_]+)")
_UNSUPPORTED_PARAMS = ("secondaryAggregation.",)
_AGG_PARAMS = ("aggregation.alignmentPeriod", "aggregation.perSeriesAligner", "aggregation.crossSeriesReducer",
               "aggregation.groupByFields")
# The connector metric's buckets (unverified: Google's real bucket layout for this metric):
# 20 linear buckets of 5 percentage points, plus underflow and overflow.
CPU_BUCKETS = {"linearBuckets": {"numFiniteBuckets": 20, "width": 0.05, "offset": 0.0}}


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
        return parse_rfc3339(raw)
    except ValueError as exc:
        raise invalid(f"{param}: '{raw[:80]}' is {exc}.", param) from exc


def _kind_fields(metric_type: str) -> dict[str, str]:
    """metricKind and valueType of a built-in metric, as the catalogue publishes them."""
    kind, value_type = metric_catalog.BUILTIN[metric_type]
    return {"metricKind": kind, "valueType": value_type}


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
                    **_kind_fields(CONNECTOR_UTILISATION),
                    "value": {"distributionValue": _cpu_distribution(vpc["utilisation"], vpc["maxInstances"])}})
    inst = sim.store.get("sqladmin", db["instance"]) if db.get("instance") else None
    # An instance in MAINTENANCE (restarting) has no backends to count: no data.
    if db.get("available") and inst and inst.get("project") == project:
        in_use = math.ceil(min(db["demand_connections"], db["max_connections"]))
        out.append({"metric": {"type": SQL_BACKENDS, "labels": {}},
                    "resource": {"type": "cloudsql_database",
                                 "labels": {"project_id": project,
                                            "database_id": f"{project}:{inst['name']}",
                                            "region": inst.get("region", "")}},
                    **_kind_fields(SQL_BACKENDS),
                    "value": {"int64Value": str(in_use)}})
    return out


def _cpu_distribution(u: float, instances: int) -> dict[str, Any]:
    """A DISTRIBUTION of the connector instances' CPU use (GCP_FIDELITY A4): the model runs
    every instance at the connector's utilisation u (it may exceed 1: overload)."""
    buckets = [0] * 22  # underflow, 20 finite, overflow
    index = min(21, 1 + int(u / 0.05)) if u >= 0 else 0
    buckets[index] = instances
    return {"count": str(instances), "mean": u, "sumOfSquaredDeviation": 0.0, "bucketOptions": CPU_BUCKETS,
            "bucketCounts": [str(b) for b in buckets[:index + 1]]}


def _aggregate(request: Request, kind: str, value_type: str) -> str | None:
    """Validate ``aggregation.*``; returns the aligner. A single series per resource is modelled,
    so reducers leave it as it is; aligners change only the value type (as documented)."""
    aligner = request.query_params.get("aggregation.perSeriesAligner")
    reducer = request.query_params.get("aggregation.crossSeriesReducer")
    metric_catalog.check_aligner(aligner, kind, value_type, "aggregation.perSeriesAligner")
    if aligner not in (None, "ALIGN_NONE") and not request.query_params.get("aggregation.alignmentPeriod"):
        raise invalid("aggregation.alignmentPeriod: required with a perSeriesAligner.", "aggregation.alignmentPeriod")
    if reducer not in (None, "REDUCE_NONE"):
        if not re.fullmatch(r"REDUCE_[A-Z0-9_]+", reducer):
            raise invalid(f"aggregation.crossSeriesReducer: '{reducer}' is not a reducer.",
                          "aggregation.crossSeriesReducer")
        if aligner in (None, "ALIGN_NONE"):
            raise invalid("aggregation.crossSeriesReducer: needs a perSeriesAligner other than ALIGN_NONE.",
                          "aggregation.crossSeriesReducer")
    return aligner


def _aligned(series: dict[str, Any], aligner: str | None) -> dict[str, Any]:
    value = series["value"]
    if aligner is None or aligner == "ALIGN_NONE":
        return series
    number = value["distributionValue"]["mean"] if "distributionValue" in value else \
        float(value.get("doubleValue", value.get("int64Value", 0)))
    # Both modelled series are GAUGEs, so check_aligner has already refused ALIGN_RATE and
    # ALIGN_DELTA (CUMULATIVE/DELTA only). The model's state is constant over an alignment
    # period: one value per period, so ALIGN_STDDEV is 0. In the connector's distribution
    # every instance runs at the same utilisation, so each percentile equals the mean.
    if aligner.startswith("ALIGN_PERCENTILE") or aligner in ("ALIGN_MEAN", "ALIGN_STDDEV"):
        series["valueType"] = "DOUBLE"
        series["value"] = {"doubleValue": 0.0 if aligner == "ALIGN_STDDEV" else number}
    elif aligner == "ALIGN_COUNT":
        series["valueType"] = "INT64"
        series["value"] = {"int64Value": "1"}
    return series


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
        if param.startswith(_UNSUPPORTED_PARAMS) or (param.startswith("aggregation.") and param not in _AGG_PARAMS):
            raise invalid(f"{param}: not supported by the simulator.", param)
    if not request.query_params.get("filter"):
        raise invalid("filter: required.", "filter")
    terms = _parse_series_filter(request.query_params["filter"])
    metric_type = next(v for f, op, v in terms if f == "metric.type" and op == "=")
    # Unverified: that timeSeries.list answers 404 (like alertPolicies.create) for a type that
    # does not exist; a known type without data answers {}.
    kind, value_type = metric_catalog.require(sim, sim.project_id(p), metric_type)
    aligner = _aggregate(request, kind, value_type)
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
        value = _aligned(series, aligner).pop("value")
        if view == "FULL":
            series["points"] = [{"interval": {"startTime": stamp, "endTime": stamp}, "value": value}]
        items.append(series)
    out = paged(items, request, "timeSeries")
    return out if out["timeSeries"] else {}  # no data: an empty object, as GCP answers
