"""Cloud Monitoring ``timeSeries.list`` through the real discovery client: the connector's
utilisation and the database's connections come from the health model at simulated now."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from gcpsim_helpers import (
    BACKENDS, CONNECTOR, CONNECTOR_FILTER, CPU, PROJECT, SQL_FILTER, add_fault, advance, discovery, raw, rfc3339,
    series, value, window,
)
from googleapiclient.errors import HttpError


def test_request_uses_the_discovery_query_parameters(sim):
    mon = discovery(sim, "monitoring", "v3")
    req = mon.projects().timeSeries().list(name=f"projects/{PROJECT}", filter=CONNECTOR_FILTER,
                                           interval_startTime="a", interval_endTime="b", view="FULL")
    assert f"/v3/projects/{PROJECT}/timeSeries?" in req.uri
    assert "interval.startTime=a" in req.uri and "interval.endTime=b" in req.uri
    # The simulator answers those parameters: an interval that ended an hour before the
    # simulated now gets its one point stamped at the interval's end.
    end = datetime.now(timezone.utc) - timedelta(hours=1)
    start, end = rfc3339(end - timedelta(minutes=5)), rfc3339(end)
    out = mon.projects().timeSeries().list(name=f"projects/{PROJECT}", filter=CONNECTOR_FILTER,
                                           interval_startTime=start, interval_endTime=end, view="FULL").execute()
    (point,) = out["timeSeries"][0]["points"]
    assert datetime.fromisoformat(point["interval"]["startTime"]) == datetime.fromisoformat(end)
    assert datetime.fromisoformat(point["interval"]["endTime"]) == datetime.fromisoformat(end)


def test_default_world_connector_over_capacity_and_database_saturated(sim):
    start, end = window()
    out = series(sim, CONNECTOR_FILTER)
    # The simulator keeps no history: one point, stamped inside the requested interval.
    stamp = out["timeSeries"][0]["points"][0]["interval"]["endTime"]
    # (375 + auth's 120 ALL_TRAFFIC) Mbps over 3 x e2-micro (300 Mbps): a DISTRIBUTION (A4)
    # of 3 instances, all in the overflow bucket.
    point = {"interval": {"startTime": stamp, "endTime": stamp},
             "value": {"distributionValue": {
                 "count": "3", "mean": 1.65, "sumOfSquaredDeviation": 0.0,
                 "bucketOptions": {"linearBuckets": {"numFiniteBuckets": 20, "width": 0.05, "offset": 0.0}},
                 "bucketCounts": ["0"] * 21 + ["3"]}}}
    assert out == {"timeSeries": [{
        "metric": {"type": CPU, "labels": {}},
        "resource": {"type": "vpc_access_connector",
                     "labels": {"resource_container": PROJECT, "location": "us-central1",
                                "connector_name": "staging-connector"}},
        "metricKind": "GAUGE", "valueType": "DISTRIBUTION",
        "points": [point]}]}
    assert datetime.fromisoformat(start) <= datetime.fromisoformat(stamp) <= datetime.fromisoformat(end)

    sql = series(sim, SQL_FILTER)["timeSeries"][0]
    assert (sql["metricKind"], sql["valueType"]) == ("GAUGE", "INT64")
    assert sql["resource"]["labels"]["database_id"] == f"{PROJECT}:netra-staging-db"
    # Pools want 142.5 connections; Postgres admits max_connections (tier default 100).
    assert sql["points"][0]["value"] == {"int64Value": "100"}
    figures = sim.admin("GET", "/_sim/app")
    assert figures["database"]["demand_connections"] > figures["database"]["max_connections"] == 100


def test_figures_drop_after_the_connector_and_sql_are_expanded(sim):
    assert value(sim, CONNECTOR_FILTER) > 1
    assert value(sim, SQL_FILTER) / 100 >= 1
    vpc = discovery(sim, "vpcaccess", "v1")
    vpc.projects().locations().connectors().patch(
        name=CONNECTOR, updateMask="minInstances,maxInstances,machineType",
        body={"minInstances": 3, "maxInstances": 10, "machineType": "e2-standard-4"}).execute()
    discovery(sim, "sqladmin", "v1").instances().patch(
        project=PROJECT, instance="netra-staging-db", body={"settings": {
            "tier": "db-custom-2-7680",
            "databaseFlags": [{"name": "max_connections", "value": "300"}]}}).execute()
    # While the tier change restarts the instance there are no backends to count.
    advance(sim, 10)
    assert series(sim, SQL_FILTER) == {}
    advance(sim, 400)
    assert value(sim, CONNECTOR_FILTER) == pytest.approx(495 / 16000, abs=1e-4)
    in_use = value(sim, SQL_FILTER)
    assert in_use == 143 and in_use / 300 < 0.75  # ceil(142.5): every pool now fits


def test_filters_select_series_and_unknown_metrics_have_no_data(sim):
    assert series(sim, f'metric.type = "{CPU}" AND resource.label.connector_name = "other"') == {}
    assert series(sim, f'metric.type="{CPU}" resource.type="vpc_access_connector"')["timeSeries"]
    assert series(sim, f'metric.type = "{BACKENDS}" AND resource.labels.region = "us-central1"')
    assert series(sim, 'metric.type = "run.googleapis.com/request_count"') == {}  # known, no data
    with pytest.raises(HttpError) as err:  # a type that does not exist
        series(sim, 'metric.type = "custom.googleapis.com/db/connection_time"')
    assert err.value.status_code == 404 and "Cannot find metric(s)" in err.value.reason
    headers = series(sim, CONNECTOR_FILTER, view="HEADERS")["timeSeries"][0]
    assert "points" not in headers and headers["valueType"] == "DISTRIBUTION"


def test_aggregation_validates_the_aligner(sim):
    out = series(sim, CONNECTOR_FILTER, aggregation_alignmentPeriod="60s",
                 aggregation_perSeriesAligner="ALIGN_PERCENTILE_99", aggregation_crossSeriesReducer="REDUCE_MAX")
    (ts,) = out["timeSeries"]
    assert ts["valueType"] == "DOUBLE" and ts["points"][0]["value"] == {"doubleValue": 1.65}
    with pytest.raises(HttpError) as err:
        series(sim, CONNECTOR_FILTER, aggregation_alignmentPeriod="60s", aggregation_perSeriesAligner="ALIGN_MEAN")
    assert err.value.status_code == 400 and err.value.reason.endswith(
        "The aligner cannot be applied to metrics with kind GAUGE and value type DISTRIBUTION.")
    mean = series(sim, SQL_FILTER, aggregation_alignmentPeriod="60s", aggregation_perSeriesAligner="ALIGN_MEAN")
    assert mean["timeSeries"][0]["points"][0]["value"] == {"doubleValue": 100.0}


@pytest.mark.parametrize("flt, params, field", [
    ('resource.type = "vpc_access_connector"', {}, "filter"),
    (f'metric.type = "{CPU}" OR resource.type = "x"', {}, "filter"),
    (f'metric.type = "{CPU}" AND foo.bar = "x"', {}, "filter"),
    (CONNECTOR_FILTER, {"interval_startTime": "2030-01-01T00:00:00Z"}, "interval.startTime"),
    (CONNECTOR_FILTER, {"interval_endTime": "yesterday"}, "interval.endTime"),
    (CONNECTOR_FILTER, {"aggregation_perSeriesAligner": "ALIGN_PERCENTILE_99"}, "aggregation.alignmentPeriod"),
    (CONNECTOR_FILTER, {"secondaryAggregation_perSeriesAligner": "ALIGN_MEAN"},
     "secondaryAggregation.perSeriesAligner"),
])
def test_malformed_requests_are_invalid_argument_naming_the_field(sim, flt, params, field):
    with pytest.raises(HttpError) as err:
        series(sim, flt, **params)
    assert err.value.status_code == 400 and field in str(err.value)


def test_end_time_is_required(sim):
    status, body = raw(sim, "GET", f"/v3/projects/{PROJECT}/timeSeries?filter=metric.type%3D%22{CPU}%22")
    assert status == 400 and body["error"]["details"][0]["metadata"]["field"] == "interval.endTime"


def test_http_faults_apply_to_time_series(sim):
    fault = add_fault(sim, api="monitoring", method="GET", resource="/timeSeries", kind="http",
                      status=503, count=1)
    with pytest.raises(HttpError) as err:
        series(sim, CONNECTOR_FILTER)
    assert err.value.status_code == 503
    assert value(sim, CONNECTOR_FILTER) == 1.65
    assert [f["fired"] for f in sim.admin("GET", "/_sim/faults")["faults"]
            if f["id"] == fault["id"]] == [1]
