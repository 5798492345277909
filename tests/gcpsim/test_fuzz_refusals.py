"""Generated malformed calls across the simulated APIs and the admin endpoints (in process):
each is refused with a Google-shaped 4xx, never a 500, and leaves the world as it was
(resources, faults, operations, mutation log, clock, projects, app model, DNS).

The examples are derandomized so that CI and a developer see the same calls; together the
tests below make well over 600 calls (test_volume checks the count)."""
from __future__ import annotations

import copy
import json
import re

import pytest
from fuzz_support import (BODY_CALLS, LIST_PATHS, SERIES, SERIES_FILTER, InProcessSim, assert_google_error, at,
                          dict_paths, json_value, leaf_paths, refused_without_change, wrong_type_for)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Long proofs: `./dev test -m faults` (CI) runs them; `./dev test` stays under 5 minutes.
pytestmark = pytest.mark.faults

FUZZ = settings(max_examples=55, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MAP_FIELDS = {"userLabels", "labels"}  # maps: any key is a valid name there


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> InProcessSim:
    return InProcessSim(tmp_path_factory.mktemp("gcpsim-fuzz"))


def _with(body: dict, path: tuple, key, value) -> dict:
    out = copy.deepcopy(body)
    at(out, path)[key] = value
    return out


@FUZZ
@given(data=st.data())
def test_private_bookkeeping_key_anywhere_in_a_body(sim, data):
    method, path, body = data.draw(st.sampled_from(BODY_CALLS))
    where = data.draw(st.sampled_from(dict_paths(body)))
    error = refused_without_change(sim, method, path, _with(body, where, "_sim", data.draw(json_value)))
    assert '"_sim"' in error["message"]


@FUZZ
@given(data=st.data())
def test_unknown_name_at_any_depth(sim, data):
    method, path, body = data.draw(st.sampled_from(BODY_CALLS))
    where = data.draw(st.sampled_from([p for p in dict_paths(body) if not p or p[-1] not in MAP_FIELDS]))
    name = data.draw(st.text(min_size=1, max_size=10).filter(lambda n: n not in at(body, where)).map(lambda n: "zz" + n))
    error = refused_without_change(sim, method, path, _with(body, where, name, data.draw(json_value)))
    assert "Unknown name" in error["message"] and "Cannot find field" in error["message"]


@FUZZ
@given(data=st.data())
def test_wrong_json_type_for_a_field(sim, data):
    method, path, body = data.draw(st.sampled_from(BODY_CALLS))
    target = data.draw(st.sampled_from(leaf_paths(body)))
    refused_without_change(sim, method, path, _with(body, target[:-1], target[-1],
                                                    data.draw(wrong_type_for(at(body, target)))))


@FUZZ
@given(data=st.data())
def test_any_junk_in_place_of_a_field_or_object(sim, data):
    """Junk in place of any value or object never makes a 500. A junk value may happen to be
    acceptable (a list where a list was), so only a refusal is held to leaving the world alone."""
    method, path, body = data.draw(st.sampled_from(BODY_CALLS))
    target = data.draw(st.sampled_from(leaf_paths(body) + dict_paths(body)[1:]))
    junk = _with(body, target[:-1], target[-1], data.draw(wrong_type_for(at(body, target))))
    before = sim.world()
    response = sim.call(method, path, junk)
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        assert_google_error(response)
        assert sim.world() == before
    else:  # accepted: put the world back for the next example
        sim.call("POST", "/_sim/reset")


NUMBER_TOKENS = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "nan", "inf"])


@FUZZ
@given(data=st.data())
def test_unparseable_bodies(sim, data):
    method, path, body = data.draw(st.sampled_from(BODY_CALLS + [("POST", "/_sim/clock/advance", {}),
                                                                     ("POST", "/_sim/faults", {}),
                                                                     ("POST", "/_sim/reset", {})]))
    kind = data.draw(st.sampled_from(["number", "not-object", "syntax", "bytes", "deep"]))
    if kind == "number":
        raw = json.dumps(body | {"seconds": 0})[:-1].encode() + b', "x": ' + data.draw(NUMBER_TOKENS).encode() + b"}"
    elif kind == "not-object":
        raw = json.dumps(data.draw(json_value.filter(lambda v: not isinstance(v, dict) and v is not None))).encode()
    elif kind == "syntax":
        raw = json.dumps(body)[:data.draw(st.integers(1, max(1, len(json.dumps(body)) - 1)))].encode()
    elif kind == "bytes":
        raw = b'{"a": "' + data.draw(st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80"])) + b'"}'
    else:
        depth = data.draw(st.integers(101, 20_000))
        raw = (b'{"a":' * depth) + b"1" + (b"}" * depth)
    refused_without_change(sim, method, path, raw=raw)


@FUZZ
@given(method=st.sampled_from([c[:2] for c in BODY_CALLS if "connectors?" in c[1]]),
       cidr=st.one_of(st.text(max_size=20), st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,4}){3}/[0-9]{1,2}", fullmatch=True))
       .filter(lambda c: c and not c.endswith("0/28")))
def test_connector_ip_ranges_that_are_not_28_networks(sim, method, cidr):
    http_method, path = method
    error = refused_without_change(sim, http_method, path, {"network": "staging-vpc", "ipCidrRange": cidr})
    assert error["details"][0]["metadata"]["field"] == "ipCidrRange"


QUERY_JUNK = st.one_of(st.text(max_size=30), st.sampled_from(
    ["-1", "1e3", "NaN", "inf", "9" * 40, "0x10", " 5", "\u0663", "1.5", "-0"]))
# Not RFC 3339, or outside google.protobuf.Timestamp's range (years 1-9999 in UTC).
BAD_TIMES = st.one_of(st.text(min_size=1, max_size=30).filter(lambda v: not re.match(r"[0-9]{4}-", v)), st.sampled_from([
    "2024-05-01", "2024-13-01T00:00:00Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+01:00", "2024-05-01T12:00:00", "20240501T120000Z", "2024-05-01T25:00:00Z",
    "2024-02-30T00:00:00Z", "2024-05-01T12:00:00.1234567890Z", "2024-05-01 12:00:00Z", "2024-05-01T12:00Z",
    "\u0662\u0660\u0662\u0664-05-01T12:00:00Z", "2024-05-01T12:00:00+24:00"]))


@FUZZ
@given(path=st.sampled_from(LIST_PATHS), param=st.sampled_from(["pageSize", "pageToken"]), value=QUERY_JUNK)
def test_paging_parameters(sim, path, param, value):
    before = sim.world()
    sim.calls += 1
    response = sim.client.get(path, params={param: value})
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        assert_google_error(response, status=400)
    assert sim.world() == before


@FUZZ
@given(param=st.sampled_from(["interval.endTime", "interval.startTime"]), value=BAD_TIMES)
def test_time_series_interval_times(sim, param, value):
    params = {"filter": SERIES_FILTER, "interval.endTime": "2030-01-01T00:00:00Z", param: value}
    sim.calls += 1
    error = assert_google_error(sim.client.get(SERIES, params=params), status=400)
    assert error["details"][0]["metadata"]["field"] == param


SECONDS_JUNK = st.one_of(st.text(max_size=10), st.booleans(), st.lists(st.integers(), max_size=2),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                         st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
                         st.integers(max_value=-1), st.floats(min_value=3.2e8, allow_nan=False, allow_infinity=False),
                         st.integers(min_value=320_000_000))


@FUZZ
@given(seconds=SECONDS_JUNK)
def test_clock_advances_that_would_brick_the_simulator(sim, seconds):
    error = refused_without_change(sim, "POST", "/_sim/clock/advance", {"seconds": seconds})
    assert error["details"][0]["metadata"]["field"] == "seconds"
    assert sim.client.get("/_sim/clock").status_code == 200


FAULT_DEFECTS = st.one_of(
    st.fixed_dictionaries({"kind": st.text(max_size=12).filter(lambda k: k not in (
        "http", "operation_error", "operation_hang", "sql_maintenance", "revision_start_failure", "app_503"))}),
    st.fixed_dictionaries({"kind": st.just("http"), "resource": json_value.filter(
        lambda v: v not in (None, "") and not isinstance(v, str))}),
    st.fixed_dictionaries({"kind": st.just("app_503"), "count": st.one_of(
        st.integers(max_value=0), st.integers(min_value=1_000_001), st.text(max_size=5).filter(
            lambda t: not (t.isascii() and t.isdigit())), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
        st.lists(st.integers(), max_size=2))}),
    st.fixed_dictionaries({"kind": st.just("http"), "status": st.one_of(
        st.integers(max_value=399), st.integers(min_value=600), st.just(401), st.text(max_size=4).filter(
            lambda t: not (t.isascii() and t.isdigit())))}),
    st.fixed_dictionaries({"kind": st.just("operation_error"), "code": st.one_of(
        st.integers(max_value=0), st.integers(min_value=17))}),
    st.fixed_dictionaries({"kind": st.just("http"), "method": st.one_of(st.integers(), st.text(max_size=6).filter(
        lambda m: m.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE", "")))}),
    st.fixed_dictionaries({"kind": st.just("http"), "api": json_value.filter(lambda a: a is not None and a not in (
        "run", "vpcaccess", "sqladmin", "compute", "secretmanager", "monitoring", "redis", "app"))}),
    st.fixed_dictionaries({"kind": st.just("http"), "zz": json_value}),
)


@FUZZ
@given(spec=FAULT_DEFECTS)
def test_faults_that_cannot_be_matched_or_rendered(sim, spec):
    refused_without_change(sim, "POST", "/_sim/faults", spec)
    assert sim.client.get(LIST_PATHS[0]).status_code == 200


GOOD_PROJECTS = [{"projectId": "p", "projectNumber": "1"}]
WORLD_DEFECTS = st.one_of(
    st.fixed_dictionaries({"projects": json_value.filter(lambda v: not isinstance(v, list) or not v or not all(
        isinstance(p, dict) and isinstance(p.get("projectId"), str) and p["projectId"]
        and isinstance(p.get("projectNumber"), str) and p["projectNumber"] for p in v))}),
    st.fixed_dictionaries({"projects": st.just(GOOD_PROJECTS), "app": json_value.filter(
        lambda v: not isinstance(v, dict) or bool(v))}),
    st.fixed_dictionaries({"projects": st.just(GOOD_PROJECTS), "app": st.fixed_dictionaries({"model": st.dictionaries(
        st.text(max_size=5), json_value.filter(lambda v: not isinstance(v, (int, float)) or isinstance(v, bool)),
        min_size=1, max_size=2)})}),
    st.fixed_dictionaries({"projects": st.just(GOOD_PROJECTS), "dns": json_value.filter(
        lambda v: not (isinstance(v, dict) and all(isinstance(x, str) for x in v.values())))}),
    st.fixed_dictionaries({"projects": st.just(GOOD_PROJECTS), "run": json_value.filter(
        lambda v: bool(v) and not (isinstance(v, dict) and all(isinstance(x, dict) and "/" in k for k, x in v.items())))}),
    st.fixed_dictionaries({"projects": st.just(GOOD_PROJECTS), "zz": json_value}),
)


@FUZZ
@given(world=WORLD_DEFECTS)
def test_worlds_that_cannot_be_served(sim, world):
    refused_without_change(sim, "POST", "/_sim/reset", world)


def test_volume(sim):
    """Runs last in this module: the fuzz tests above made at least 600 calls."""
    if sim.calls == 0:
        pytest.skip("run with the fuzz tests")
    assert sim.calls >= 600, sim.calls
