"""Building and validating the request locally, before anything reaches Temporal."""

from __future__ import annotations

import json

import pytest

from cli.client import CliError
from cli.request_input import build_request, raw_request
from runbook.request import RemediationRequest


def test_flags_override_file_and_set_paths(tmp_path):
    f = tmp_path / "req.json"
    f.write_text(json.dumps({"incident_id": "FROM-FILE", "targets": {"region": "europe-west1"}}))
    options = dict(request_file=f, incident="1278", requested_by="carol", project="proj-one",
                   sets=["soak.window_s=120", "approval.default.approvers=[\"alice\",\"bob\"]",
                         "targets.connector=my-conn"])
    # Flags and --set merge into the file's object without adding anything else ...
    req = raw_request(**options)
    assert req["incident_id"] == "1278"
    assert req["requested_by"] == "carol"
    assert req["targets"] == {"region": "europe-west1", "project": "proj-one", "connector": "my-conn"}
    assert req["soak"] == {"window_s": 120}
    assert req["approval"]["default"]["approvers"] == ["alice", "bob"]
    # ... and what is sent is that object validated, defaults filled in.
    model = build_request(**options)
    assert model == RemediationRequest.model_validate(req)
    assert (model.targets.region, model.targets.project, model.targets.connector) == (
        "europe-west1", "proj-one", "my-conn")
    assert model.soak.window_s == 120 and model.approval.default.approvers == ["alice", "bob"]


def test_requester_defaults_to_login_so_two_person_rule_has_a_name():
    assert raw_request()["requested_by"]
    assert build_request().requested_by == raw_request()["requested_by"]


def test_every_bad_field_is_named():
    with pytest.raises(CliError) as exc:
        build_request(incident="bad id!", sets=["desired.sql_tier=db-g1-standard-2",
                                                "desired.connector_max_instances=30"])
    msg = exc.value.message
    assert "incident_id" in msg
    assert "desired.sql_tier" in msg and "not a Cloud SQL tier" in msg
    assert "desired.connector_max_instances" in msg
    assert "fix the named field" in exc.value.hint


def test_cross_field_rule_is_explained():
    # The seed's 90 s timeout with a 30 s interval: Google Cloud refuses it.
    with pytest.raises(CliError) as exc:
        build_request(sets=["desired.health_check_timeout_s=90"])
    assert "desired" in exc.value.message
    assert "health_check_timeout_s may not exceed health_check_interval_s (90 > 30)" in exc.value.message


def test_unknown_field_is_refused():
    with pytest.raises(CliError) as exc:
        build_request(sets=["soak.windw_s=10"])
    assert "soak.windw_s" in exc.value.message


@pytest.mark.parametrize("content, expected", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
])
def test_bad_request_file(tmp_path, content, expected):
    f = tmp_path / "req.json"
    f.write_text(content)
    with pytest.raises(CliError) as exc:
        build_request(request_file=f)
    assert expected in exc.value.message


def test_missing_request_file(tmp_path):
    with pytest.raises(CliError) as exc:
        build_request(request_file=tmp_path / "nope.json")
    assert "does not exist" in exc.value.message


def test_set_needs_key_value():
    with pytest.raises(CliError) as exc:
        build_request(sets=["soak.window_s"])
    assert "KEY=VALUE" in exc.value.message


# --- request files that are not requests: a clear error naming the file, exit code 2 ---------
@pytest.mark.parametrize("content, reason", [
    (bytes(range(256)) * 4, "binary"),
    ('{"incident_id": "caf\u00e9"}'.encode("latin-1"), "not UTF-8 text (byte 0xe9"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nests deeper than 32 levels"),
    (b"[" * 5000 + b"]" * 5000, "nests deeper than 32 levels"),
    (b"incident_id: 1278\nsoak: {window_s: 60}\n", "is not valid JSON: line 1 column 1"),
    (b'{"soak": {"window_s": NaN}}', "NaN is not a JSON number"),
    (b'{"soak": {"window_s": 1e999}}', "out of range"),
    (b'{"soak": {"window_s": ' + b"9" * 5000 + b"}}", "is not valid JSON"),
    (b'["incident_id"]', "must hold a JSON object"),
])
def test_a_file_that_is_not_a_json_request_names_the_file_and_reason(tmp_path, content, reason):
    f = tmp_path / "req.json"
    f.write_bytes(content)
    with pytest.raises(CliError) as err:
        build_request(request_file=f)
    assert str(f) in err.value.message and reason in err.value.message, err.value.message
    assert err.value.exit_code == 2 and err.value.hint


def test_a_directory_or_missing_file_is_named(tmp_path):
    for path, reason in ((tmp_path, "is a directory"), (tmp_path / "nope.json", "does not exist")):
        with pytest.raises(CliError) as err:
            build_request(request_file=path)
        assert str(path) in err.value.message and reason in err.value.message
        assert err.value.exit_code == 2


def test_a_utf8_file_with_a_byte_order_mark_is_read(tmp_path):
    f = tmp_path / "req.json"
    f.write_bytes(b"\xef\xbb\xbf" + json.dumps({"incident_id": "BOM-1"}).encode())
    assert raw_request(request_file=f)["incident_id"] == "BOM-1"


@pytest.mark.parametrize("assignment, reason", [
    ("soak.window_s=" + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ("soak.window_s=NaN", "NaN is not a JSON number"),
    ("." .join(["a"] * 40) + "=1", "nests deeper than 32 levels"),
])
def test_set_values_that_cannot_be_requests_are_refused(assignment, reason):
    with pytest.raises(CliError) as err:
        raw_request(sets=[assignment])
    assert reason in err.value.message and err.value.exit_code == 2
