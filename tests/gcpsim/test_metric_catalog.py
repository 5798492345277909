"""Alert policies refused where Google refuses them: a metric that does not exist (A5) and an
aligner that does not fit the metric's kind/value type (A4), through the discovery client."""
from __future__ import annotations

import pytest
from gcpsim_helpers import PROJECT, discovery, mutations
from googleapiclient.errors import HttpError

CPU = "vpcaccess.googleapis.com/connector/cpu/utilizations"
CUSTOM = "custom.googleapis.com/database/connection_time"


def policy(metric: str, aligner: str, denominator: tuple[str, str] | None = None) -> dict:
    threshold = {"filter": f'metric.type="{metric}"', "comparison": "COMPARISON_GT", "thresholdValue": 0.7,
                 "duration": "300s",
                 "aggregations": [{"alignmentPeriod": "60s", "perSeriesAligner": aligner}]}
    if denominator:
        threshold["denominatorFilter"] = f'metric.type="{denominator[0]}"'
        threshold["denominatorAggregations"] = [{"alignmentPeriod": "60s", "perSeriesAligner": denominator[1]}]
    return {"displayName": f"{metric} {aligner}", "combiner": "OR",
            "conditions": [{"displayName": "c", "conditionThreshold": threshold}]}


@pytest.fixture
def mon(sim):
    return discovery(sim, "monitoring", "v3")


def _create(mon, body):
    return mon.projects().alertPolicies().create(name=f"projects/{PROJECT}", body=body).execute()


@pytest.mark.parametrize("metric, aligner, kind, value_type", [
    (CPU, "ALIGN_MEAN", "GAUGE", "DISTRIBUTION"),
    (CPU, "ALIGN_DELTA", "GAUGE", "DISTRIBUTION"),   # DELTA needs a CUMULATIVE/DELTA metric
    (CPU, "ALIGN_RATE", "GAUGE", "DISTRIBUTION"),
    ("cloudsql.googleapis.com/database/cpu/utilization", "ALIGN_RATE", "GAUGE", "DOUBLE"),
    ("cloudsql.googleapis.com/database/postgresql/num_backends", "ALIGN_PERCENTILE_99", "GAUGE", "INT64"),
    ("run.googleapis.com/request_latencies", "ALIGN_MEAN", "DELTA", "DISTRIBUTION"),
])
def test_aligner_that_does_not_fit_is_refused(sim, mon, metric, aligner, kind, value_type):
    with pytest.raises(HttpError) as err:
        _create(mon, policy(metric, aligner))
    assert err.value.status_code == 400
    assert err.value.reason == (f'Field aggregation.perSeriesAligner had an invalid value of "{aligner}": The aligner '
                                f"cannot be applied to metrics with kind {kind} and value type {value_type}.")
    assert mutations(sim) == []


@pytest.mark.parametrize("metric, aligner", [
    (CPU, "ALIGN_PERCENTILE_99"), (CPU, "ALIGN_PERCENTILE_95"), (CPU, "ALIGN_SUM"),
    ("run.googleapis.com/request_latencies", "ALIGN_DELTA"),
    ("run.googleapis.com/request_latencies", "ALIGN_PERCENTILE_99"),
    ("run.googleapis.com/container/startup_latencies", "ALIGN_PERCENTILE_50"),
    ("run.googleapis.com/request_count", "ALIGN_RATE"),
    ("cloudsql.googleapis.com/database/memory/utilization", "ALIGN_MEAN"),
    ("redis.googleapis.com/clients/connected", "ALIGN_MAX"),
])
def test_fitting_aligner_is_accepted(sim, mon, metric, aligner):
    assert _create(mon, policy(metric, aligner))["name"]


def test_denominator_aggregations_are_checked_too(sim, mon):
    body = policy("run.googleapis.com/request_count", "ALIGN_RATE", (CPU, "ALIGN_MEAN"))
    with pytest.raises(HttpError) as err:
        _create(mon, body)
    assert err.value.status_code == 400 and "kind GAUGE and value type DISTRIBUTION" in err.value.reason


def test_metric_that_does_not_exist_is_not_found_until_described(sim, mon):
    with pytest.raises(HttpError) as err:
        _create(mon, policy(CUSTOM, "ALIGN_MEAN"))
    assert err.value.status_code == 404
    assert err.value.reason == f'Cannot find metric(s) that match type = "{CUSTOM}".'
    created = _create(mon, policy("run.googleapis.com/request_count", "ALIGN_RATE"))
    with pytest.raises(HttpError) as err:  # patch is checked the same way
        mon.projects().alertPolicies().patch(name=created["name"], updateMask="conditions",
                                             body={"conditions": policy(CUSTOM, "ALIGN_MEAN")["conditions"]}
                                             ).execute()
    assert err.value.status_code == 404
    descriptors = mon.projects().metricDescriptors()
    descriptors.create(name=f"projects/{PROJECT}", body={"type": CUSTOM, "metricKind": "GAUGE",
                                                          "valueType": "DOUBLE", "unit": "ms"}).execute()
    got = descriptors.get(name=f"projects/{PROJECT}/metricDescriptors/{CUSTOM}").execute()
    assert (got["metricKind"], got["valueType"]) == ("GAUGE", "DOUBLE")
    assert _create(mon, policy(CUSTOM, "ALIGN_MEAN"))["name"]
    listed = descriptors.list(name=f"projects/{PROJECT}", filter=f'metric.type = "{CUSTOM}"').execute()
    assert [d["type"] for d in listed["metricDescriptors"]] == [CUSTOM]
    with pytest.raises(HttpError) as err:
        descriptors.get(name=f"projects/{PROJECT}/metricDescriptors/custom.googleapis.com/nope").execute()
    assert err.value.status_code == 404
