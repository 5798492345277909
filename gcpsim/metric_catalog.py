"""Which metric types exist (kind + value type) and which aligners fit them.

Built-in metric types are those Google publishes; a custom one (a type starting with one of
:data:`CUSTOM_PREFIXES`: ``custom.googleapis.com/``, ``workload.googleapis.com/``,
``external.googleapis.com/``) exists only when the world holds or a client creates a
metric descriptor for it (``monitoring`` record ``projects/P/metricDescriptors/TYPE``
with ``type``, ``metricKind``, ``valueType``), as on GCP where it appears once written or
created. Alert policies on a type that does not exist are refused (GCP_FIDELITY A5), and an
aligner that does not fit the metric's kind/value type is refused (A4).
"""
from __future__ import annotations

import re
from typing import Any

from .context import Sim
from .errors import GoogleError, invalid

# type -> (metricKind, valueType). Kinds/value types as Google's metric lists publish them
# (Cloud Run, Serverless VPC Access, Cloud SQL, Memorystore metric pages).
BUILTIN: dict[str, tuple[str, str]] = {
    "run.googleapis.com/request_count": ("DELTA", "INT64"),
    "run.googleapis.com/request_latencies": ("DELTA", "DISTRIBUTION"),
    "run.googleapis.com/container/startup_latencies": ("DELTA", "DISTRIBUTION"),
    "run.googleapis.com/container/instance_count": ("GAUGE", "INT64"),
    "run.googleapis.com/container/cpu/utilizations": ("DELTA", "DISTRIBUTION"),
    "run.googleapis.com/container/memory/utilizations": ("DELTA", "DISTRIBUTION"),
    "vpcaccess.googleapis.com/connector/cpu/utilizations": ("GAUGE", "DISTRIBUTION"),
    "vpcaccess.googleapis.com/connector/instances": ("GAUGE", "INT64"),
    "vpcaccess.googleapis.com/connector/sent_bytes_count": ("DELTA", "INT64"),
    "vpcaccess.googleapis.com/connector/received_bytes_count": ("DELTA", "INT64"),
    "cloudsql.googleapis.com/database/postgresql/num_backends": ("GAUGE", "INT64"),
    "cloudsql.googleapis.com/database/cpu/utilization": ("GAUGE", "DOUBLE"),
    "cloudsql.googleapis.com/database/memory/utilization": ("GAUGE", "DOUBLE"),
    "cloudsql.googleapis.com/database/up": ("GAUGE", "INT64"),
    "redis.googleapis.com/clients/connected": ("GAUGE", "INT64"),
    "redis.googleapis.com/stats/memory/usage_ratio": ("GAUGE", "DOUBLE"),
    "loadbalancing.googleapis.com/https/request_count": ("DELTA", "INT64"),
    "loadbalancing.googleapis.com/https/total_latencies": ("DELTA", "DISTRIBUTION"),
}

# The prefixes of metric types a client may create descriptors for (user-defined metrics).
CUSTOM_PREFIXES = ("custom.googleapis.com/", "workload.googleapis.com/", "external.googleapis.com/")

NUMERIC = ("INT64", "DOUBLE", "MONEY")
# aligner -> (allowed kinds, allowed value types), transcribed from the monitoring v3
# discovery document's Aggregation.perSeriesAligner descriptions.
ALIGNERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ALIGN_DELTA": (("CUMULATIVE", "DELTA"), NUMERIC + ("DISTRIBUTION",)),
    "ALIGN_RATE": (("CUMULATIVE", "DELTA"), NUMERIC),
    "ALIGN_INTERPOLATE": (("GAUGE",), NUMERIC),
    "ALIGN_NEXT_OLDER": (("GAUGE",), NUMERIC + ("DISTRIBUTION", "BOOL", "STRING")),
    "ALIGN_MIN": (("GAUGE", "DELTA"), NUMERIC),
    "ALIGN_MAX": (("GAUGE", "DELTA"), NUMERIC),
    "ALIGN_MEAN": (("GAUGE", "DELTA"), NUMERIC),
    "ALIGN_COUNT": (("GAUGE", "DELTA"), NUMERIC + ("BOOL",)),
    "ALIGN_SUM": (("GAUGE", "DELTA"), NUMERIC + ("DISTRIBUTION",)),
    "ALIGN_STDDEV": (("GAUGE", "DELTA"), NUMERIC),
    "ALIGN_COUNT_TRUE": (("GAUGE",), ("BOOL",)),
    "ALIGN_COUNT_FALSE": (("GAUGE",), ("BOOL",)),
    "ALIGN_FRACTION_TRUE": (("GAUGE",), ("BOOL",)),
    "ALIGN_PERCENTILE_99": (("GAUGE", "DELTA"), ("DISTRIBUTION",)),
    "ALIGN_PERCENTILE_95": (("GAUGE", "DELTA"), ("DISTRIBUTION",)),
    "ALIGN_PERCENTILE_50": (("GAUGE", "DELTA"), ("DISTRIBUTION",)),
    "ALIGN_PERCENTILE_05": (("GAUGE", "DELTA"), ("DISTRIBUTION",)),
    "ALIGN_PERCENT_CHANGE": (("GAUGE", "DELTA"), NUMERIC),
}
_METRIC_TYPE = re.compile(r'metric\.type\s*=\s*"([^"]+)"')


def descriptor_key(project: str, metric_type: str) -> str:
    return f"projects/{project}/metricDescriptors/{metric_type}"


def builtin_descriptor(project: str, metric_type: str) -> dict[str, str]:
    """The metric descriptor of a built-in metric type, as the API returns it."""
    kind, value_type = BUILTIN[metric_type]
    return {"name": descriptor_key(project, metric_type), "type": metric_type, "metricKind": kind,
            "valueType": value_type}


def lookup(sim: Sim, project: str, metric_type: str) -> tuple[str, str] | None:
    """(metricKind, valueType) of a metric type that exists in ``project``, else None."""
    if metric_type in BUILTIN:
        return BUILTIN[metric_type]
    desc = sim.store.get("monitoring", descriptor_key(project, metric_type))
    return (desc["metricKind"], desc["valueType"]) if desc else None


def metric_not_found(metric_type: str) -> GoogleError:
    # Google's text, as public Terraform/fabric issue reports quote it (GCP_FIDELITY A5).
    return GoogleError(404, f'Cannot find metric(s) that match type = "{metric_type}".', status="NOT_FOUND",
                       reason="notFound")


def require(sim: Sim, project: str, metric_type: str) -> tuple[str, str]:
    found = lookup(sim, project, metric_type)
    if found is None:
        raise metric_not_found(metric_type)
    return found


def check_aligner(aligner: Any, kind: str, value_type: str, field: str) -> None:
    if aligner in (None, "ALIGN_NONE"):
        return
    if aligner not in ALIGNERS:
        raise invalid(f"{field}: '{aligner}' is not a known aligner.", field)
    kinds, value_types = ALIGNERS[aligner]
    if kind not in kinds or value_type not in value_types:
        # Google's text (GCP_FIDELITY A4; public reports quote it for ALIGN_RATE and ALIGN_MEAN
        # on DELTA DISTRIBUTION metrics, e.g. exposure-notifications-verification-server#659,
        # grafana#22634, also from alertPolicies.create). The acceptance rules follow the
        # discovery document's aligner descriptions (unverified beyond the reported cases).
        raise invalid(f'Field aggregation.perSeriesAligner had an invalid value of "{aligner}": The aligner cannot '
                      f"be applied to metrics with kind {kind} and value type {value_type}.", field)


def validate_condition(sim: Sim, project: str, body: dict[str, Any], field: str) -> None:
    """The metric types a threshold/absence condition names exist, and its aligners fit them."""
    pairs = (("filter", "aggregations"), ("denominatorFilter", "denominatorAggregations"))
    for filter_field, agg_field in pairs:
        flt = body.get(filter_field)
        if not isinstance(flt, str):
            continue
        types = _METRIC_TYPE.findall(flt)
        if not types:
            continue
        kind, value_type = require(sim, project, types[0])
        aggs = body.get(agg_field) or []
        if not isinstance(aggs, list):
            raise invalid(f"{field}.{agg_field}: must be a list.", f"{field}.{agg_field}")
        for i, agg in enumerate(aggs):
            if isinstance(agg, dict):
                check_aligner(agg.get("perSeriesAligner"), kind, value_type,
                              f"{field}.{agg_field}[{i}].perSeriesAligner")


KINDS = ("GAUGE", "DELTA", "CUMULATIVE")
VALUE_TYPES = ("BOOL", "INT64", "DOUBLE", "STRING", "DISTRIBUTION", "MONEY")
