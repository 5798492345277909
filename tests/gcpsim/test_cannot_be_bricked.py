"""The simulator fails where Google fails (400 with a Google error body, nothing stored) and no
admin call can leave it unable to answer, even after a restart on the same data dir.
In process (the app on a tmp data dir); a restart is a new app on the same dir."""
from __future__ import annotations

import logging

import pytest
from fuzz_support import (BODY_CALLS, COMPUTE, CONDITION, InProcessSim, assert_google_error,
                          refused_without_change)
from gcpsim_helpers import BACKEND, CONNECTOR, LOC, PROJECT

from gcpsim import health_model
from gcpsim.clock import MAX_ADVANCE_SECONDS

HC = f"{COMPUTE}/healthChecks/staging-backend-health-check"
SERIES = f"/v3/projects/{PROJECT}/timeSeries"
CPU_FILTER = 'metric.type = "vpcaccess.googleapis.com/connector/cpu/utilizations"'


@pytest.fixture
def sim(tmp_path) -> InProcessSim:
    return InProcessSim(tmp_path)


def _answers(sim: InProcessSim) -> None:
    """Calls that render timestamps and read the world all answer."""
    for path in ("/_sim/clock", "/_sim/state", "/_sim/app", f"/v2/{BACKEND}", f"/v1/{CONNECTOR}", HC):
        assert sim.call("GET", path).status_code == 200, path
    series = sim.client.get(SERIES, params={"filter": CPU_FILTER, "interval.endTime": "2030-01-01T00:00:00Z"})
    assert series.status_code == 200


@pytest.mark.parametrize("cidr", [5, "lots", "999.1.0.0/28", "10.1.0.5/28", "10.1.0.0/24", "10.1.0.0", "::/28", ""])
def test_connector_with_an_invalid_ip_range_is_refused_and_not_stored(sim, cidr):
    body = {"network": "staging-vpc", "ipCidrRange": cidr}
    error = refused_without_change(sim, "POST", f"/v1/{LOC}/connectors?connectorId=c2", body)
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["metadata"]["field"] in ("ipCidrRange", "subnet")  # "" names neither range
    assert sim.call("GET", f"/v1/{LOC}/connectors/c2").status_code == 404


def test_connector_with_a_28_network_is_accepted(sim):
    response = sim.call("POST", f"/v1/{LOC}/connectors?connectorId=c2",
                        {"network": "staging-vpc", "ipCidrRange": "10.8.0.0/28"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_infinite_numbers_are_refused_everywhere(sim, token):
    for method, path, _body in BODY_CALLS:
        raw = b'{"minInstances": ' + token + b', "checkIntervalSec": 1}'
        error = refused_without_change(sim, method, path, raw=raw)
        assert error["message"].startswith("Invalid JSON payload received.")
    refused_without_change(sim, "POST", "/_sim/clock/advance", raw=b'{"seconds": ' + token + b"}")


def test_private_bookkeeping_key_in_a_resource_body_is_an_unknown_name(sim):
    for method, path, body in BODY_CALLS:
        error = refused_without_change(sim, method, path, body | {"_sim": {"changes": "x"}})
        assert error["message"] == 'Invalid JSON payload received. Unknown name "_sim": Cannot find field.'


def test_deep_junk_in_a_health_check_patch_is_refused_and_not_stored(sim):
    for junk in ({"junk": {"a": [1, {"b": 2}]}}, {"httpHealthCheck": {"requestPath": "/h", "deep": {"x": 1}}},
                 {"logConfig": {"enable": True, "sampleRate": 1}}, {"checkIntervalSec": {"value": 5}}):
        error = refused_without_change(sim, "PATCH", HC, junk)
        assert error["status"] == "INVALID_ARGUMENT"
    error = refused_without_change(sim, "PATCH", HC, {"httpHealthCheck": {"deep": 1}})
    assert error["message"] == ("Invalid JSON payload received. Unknown name \"deep\" at 'httpHealthCheck': "
                                "Cannot find field.")
    assert sim.call("PATCH", HC, {"checkIntervalSec": 10}).status_code == 200  # a good patch still applies


@pytest.mark.parametrize("field, value, named", [
    ("displayName", 5, "displayName"), ("displayName", ["x"], "displayName"), ("enabled", "yes", "enabled"),
    ("userLabels", {"team": 1}, "userLabels.team"), ("notificationChannels", "ch", "notificationChannels"),
    ("conditions", {"displayName": "c"}, "conditions")])
def test_alert_policy_with_wrong_field_types_is_refused_and_not_stored(sim, field, value, named):
    body = {"displayName": "cpu", "conditions": [CONDITION]} | {field: value}
    error = refused_without_change(sim, "POST", f"/v3/projects/{PROJECT}/alertPolicies", body)
    assert error["details"][0]["metadata"]["field"] == named
    assert sim.call("GET", f"/v3/projects/{PROJECT}/alertPolicies").json().get("alertPolicies", []) == []


@pytest.mark.parametrize("end", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+01:00", "10000-01-01T00:00:00Z",
                                 "2024-13-01T00:00:00Z", "2024-05-01T12:00:00", "2024-05-01"])
def test_time_series_interval_outside_rfc3339_or_its_range_is_refused(sim, end):
    response = sim.client.get(SERIES, params={"filter": CPU_FILTER, "interval.endTime": end})
    error = assert_google_error(response, status=400)
    assert error["details"][0]["metadata"]["field"] == "interval.endTime"


@pytest.mark.parametrize("seconds", [1e12, 1e300, -1, "5", True, [1], None])
def test_clock_advance_that_would_brick_is_refused_and_a_restart_still_works(sim, tmp_path, seconds):
    refused_without_change(sim, "POST", "/_sim/clock/advance", {"seconds": seconds})
    _answers(sim)
    _answers(InProcessSim(tmp_path))


def test_clock_advances_are_bounded_in_total_across_restarts(sim, tmp_path):
    assert sim.call("POST", "/_sim/clock/advance", {"seconds": MAX_ADVANCE_SECONDS - 100}).status_code == 200
    restarted = InProcessSim(tmp_path)
    error = refused_without_change(restarted, "POST", "/_sim/clock/advance", {"seconds": 101})
    assert "100 s left" in error["message"]
    _answers(restarted)


def test_a_data_dir_with_an_unrenderable_clock_starts_again(sim, tmp_path):
    # What an unbounded advance left behind before advances were bounded.
    sim.store.meta_set("clock", sim.store.meta_get("clock") | {"anchor_sim": 1e12})
    _answers(InProcessSim(tmp_path))


@pytest.mark.parametrize("spec", [{"kind": "http", "resource": 5}, {"kind": "http", "resource": {"a": 1}},
                                  {"kind": "nonsense"}, {"kind": "app_503", "count": 0},
                                  {"kind": "app_503", "count": "\u00b2"}, {"kind": "http", "status": 700},
                                  {"kind": "http", "method": ["GET"]}, {"kind": "http", "zone": "x"}])
def test_fault_that_cannot_be_matched_is_refused_and_a_restart_still_works(sim, tmp_path, spec):
    refused_without_change(sim, "POST", "/_sim/faults", spec)
    _answers(sim)
    _answers(InProcessSim(tmp_path))


@pytest.mark.parametrize("world", [
    {"projects": [5]},
    {"projects": [{"projectId": "p"}]},
    {"projects": [{"projectId": "p", "projectNumber": "1"}], "app": "junk"},
    {"projects": [{"projectId": "p", "projectNumber": "1"}], "app": {"routes": {"r": {"service": 5}}}},
    {"projects": [{"projectId": "p", "projectNumber": "1"}], "app": {"model": {"vpc_knee": "x"}}},
    {"projects": [{"projectId": "p", "projectNumber": "1"}], "run": {"projects/p/x/services/s": "junk"}},
    {"projects": [{"projectId": "p", "projectNumber": "1"}], "vpcaccess": [1, 2]},
    # Right shape, but the health model cannot read it: refused by the servability check.
    {"projects": [{"projectId": "p", "projectNumber": "1"}],
     "app": {"routes": {"r": {"service": "projects/p/locations/l/services/s"}}},
     "run": {"projects/p/locations/l/services/s": {"name": "projects/p/locations/l/services/s", "traffic": 5}}},
])
def test_reset_with_a_malformed_world_keeps_the_stored_one(sim, tmp_path, world):
    refused_without_change(sim, "POST", "/_sim/reset", world)
    _answers(sim)
    _answers(InProcessSim(tmp_path))


def test_the_dumped_world_can_be_seeded_back(sim):
    state = sim.call("GET", "/_sim/state").json()
    assert sim.call("POST", "/_sim/reset", state).json() == {"ok": True, "world": "custom"}
    _answers(sim)


def test_an_unexpected_error_is_a_logged_google_shaped_internal_error(sim, monkeypatch, caplog):
    def broken(_sim):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(health_model, "compute", broken)
    with caplog.at_level(logging.ERROR, logger="gcpsim"):
        response = sim.call("GET", "/_sim/app")
    assert response.status_code == 500
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (500, "INTERNAL") and "model exploded" in error["message"]
    assert any("internal error" in r.message and r.exc_info for r in caplog.records)
