"""Secret Manager ``versions.access`` through the real discovery client: the payload of a
seeded version (base64 ``payload.data`` plus ``dataCrc32c``, as Google answers), the
refusals for disabled versions and for the built-in world's metadata-only secrets."""
from __future__ import annotations

import base64

import pytest
from gcpsim_helpers import NUMBER, PROJECT, discovery, raw
from googleapiclient.errors import HttpError

from gcpsim.secret_manager import crc32c

SECRET = f"projects/{NUMBER}/secrets/slack-webhook"
VALUE = b"https://hooks.slack.com/services/T000/B000/not-a-real-token"


def _seed(sim, states: list[str]) -> None:
    state = sim.admin("GET", "/_sim/state")
    state["secretmanager"][SECRET] = {"name": SECRET, "replication": {"automatic": {}},
                                      "createTime": "2025-01-01T00:00:00Z"}
    for n, st in enumerate(states, start=1):
        payload = base64.b64encode(VALUE + str(n).encode()).decode()
        state["secretmanager"][f"{SECRET}/versions/{n}"] = {
            "name": f"{SECRET}/versions/{n}", "state": st, "createTime": f"2025-01-0{n}T00:00:00Z",
            "_sim": {"payload": payload}}
    sim.admin("POST", "/_sim/reset", state)


def test_crc32c_matches_the_standard_check_value():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C (Castagnoli) check value
    assert crc32c(b"") == 0


def test_access_returns_the_payload_of_the_resolved_version(sim):
    _seed(sim, ["ENABLED", "ENABLED"])
    versions = discovery(sim, "secretmanager", "v1").projects().secrets().versions()
    got = versions.access(name=f"projects/{PROJECT}/secrets/slack-webhook/versions/latest").execute()
    assert got["name"] == f"{SECRET}/versions/2"  # latest resolved, project number
    data = base64.b64decode(got["payload"]["data"])
    assert data == VALUE + b"2"
    assert got["payload"]["dataCrc32c"] == str(crc32c(data))  # int64 as a JSON string
    one = versions.access(name=f"{SECRET}/versions/1").execute()
    assert base64.b64decode(one["payload"]["data"]) == VALUE + b"1"
    # Metadata reads and the admin view of the resource never carry the value.
    meta = versions.get(name=f"{SECRET}/versions/2").execute()
    assert "payload" not in meta and "_sim" not in meta
    listed = versions.list(parent=SECRET).execute()["versions"]
    assert all("payload" not in v and "_sim" not in v for v in listed)


def test_access_refuses_a_version_that_is_not_enabled(sim):
    _seed(sim, ["ENABLED", "DISABLED"])
    versions = discovery(sim, "secretmanager", "v1").projects().secrets().versions()
    with pytest.raises(HttpError) as err:
        versions.access(name=f"{SECRET}/versions/latest").execute()
    assert err.value.status_code == 400
    assert f"Secret Version [{SECRET}/versions/2] is in DISABLED state." in str(err.value)
    status, body = raw(sim, "GET", f"/v1/{SECRET}/versions/2:access")
    assert status == 400 and body["error"]["status"] == "FAILED_PRECONDITION"


def test_access_to_missing_or_metadata_only_versions_is_a_404(sim):
    _seed(sim, ["ENABLED"])
    for path in (f"/v1/{SECRET}/versions/9:access", f"/v1/projects/{PROJECT}/secrets/nope/versions/1:access",
                 f"/v1/projects/{PROJECT}/secrets/jwt-secret-staging/versions/latest:access"):
        status, body = raw(sim, "GET", path)
        assert status == 404 and body["error"]["status"] == "NOT_FOUND", path
    status, body = raw(sim, "GET", f"/v1/projects/{PROJECT}/secrets/jwt-secret-staging/versions/1:access")
    assert "metadata only" in body["error"]["message"]
    # Access is a GET: another verb is Google's 404 for an unknown route.
    assert raw(sim, "POST", f"/v1/{SECRET}/versions/1:access")[0] == 404
