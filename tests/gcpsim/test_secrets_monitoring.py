"""Secret Manager (the built-in world is metadata only) and Cloud Monitoring via discovery clients."""
from __future__ import annotations

import json

import pytest
from gcpsim_helpers import NUMBER, PROJECT, discovery, mutations, raw
from googleapiclient.errors import HttpError

REQUIRED = ["database-url", "database-direct-url", "jwt-secret-staging", "redis-url", "oauth-client-id",
            "oauth-client-secret", "openai-api-key", "anthropic-api-key", "smtp-password", "cors-allowed-origins"]


def test_secret_metadata_without_payloads(sim):
    sm = discovery(sim, "secretmanager", "v1")
    secrets = sm.projects().secrets()
    for secret in REQUIRED:
        meta = secrets.get(name=f"projects/{PROJECT}/secrets/{secret}").execute()
        assert meta["name"] == f"projects/{NUMBER}/secrets/{secret}"
        latest = secrets.versions().get(name=f"projects/{PROJECT}/secrets/{secret}/versions/latest").execute()
        assert latest["state"] == "ENABLED" and "payload" not in latest
    versions = secrets.versions().list(parent=f"projects/{PROJECT}/secrets/database-url").execute()["versions"]
    assert [v["state"] for v in versions] == ["ENABLED", "DISABLED", "DESTROYED"]
    enabled = secrets.versions().list(parent=f"projects/{PROJECT}/secrets/database-url",
                                      filter="state:ENABLED").execute()["versions"]
    assert [v["name"].rsplit("/", 1)[-1] for v in enabled] == ["3"]
    with pytest.raises(HttpError) as err:
        secrets.get(name=f"projects/{PROJECT}/secrets/missing-secret").execute()
    assert err.value.status_code == 404
    # The built-in world stores no payloads: access() gets a 404, raw calls too
    # (test_secret_access.py covers versions that hold one).
    with pytest.raises(HttpError) as err:
        secrets.versions().access(name=f"projects/{PROJECT}/secrets/jwt-secret-staging/versions/latest").execute()
    assert err.value.status_code == 404
    for method in ("GET", "POST"):
        status, _ = raw(sim, method, f"/v1/projects/{PROJECT}/secrets/jwt-secret-staging/versions/1:access")
        assert status == 404
    for record in sim.admin("GET", "/_sim/state")["secretmanager"].values():
        assert not {"payload", "data"} & set(record)  # metadata only, never a value


RATIO_POLICY = {
    "displayName": "api 5xx ratio > 10%", "combiner": "OR", "severity": "ERROR",
    "documentation": {"content": "5xx ratio", "mimeType": "text/markdown"},
    "alertStrategy": {"autoClose": "1800s"},
    "conditions": [{"displayName": "5xx/all > 0.1", "conditionThreshold": {
        "filter": 'metric.type="run.googleapis.com/request_count" AND resource.type="cloud_run_revision" '
                  'AND metric.label.response_code_class="5xx"',
        "aggregations": [{"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_RATE",
                          "crossSeriesReducer": "REDUCE_SUM", "groupByFields": ["resource.label.service_name"]}],
        "denominatorFilter": 'metric.type="run.googleapis.com/request_count" AND resource.type="cloud_run_revision"',
        "denominatorAggregations": [{"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_RATE",
                                     "crossSeriesReducer": "REDUCE_SUM"}],
        "comparison": "COMPARISON_GT", "thresholdValue": 0.1, "duration": "300s", "trigger": {"count": 1}}}],
}


def test_alert_policies(sim):
    mon = discovery(sim, "monitoring", "v3")
    channels = mon.projects().notificationChannels().list(name=f"projects/{PROJECT}", filter='type="email"').execute()
    assert len(channels["notificationChannels"]) == 1
    sms = mon.projects().notificationChannels().list(name=f"projects/{PROJECT}", filter='type="sms"').execute()
    assert sms.get("notificationChannels", []) == []  # the filter is applied, not ignored
    channel = channels["notificationChannels"][0]["name"]
    policies = mon.projects().alertPolicies()
    assert policies.list(name=f"projects/{PROJECT}").execute().get("alertPolicies", []) == []
    created = policies.create(name=f"projects/{PROJECT}", body=RATIO_POLICY | {"notificationChannels": [channel]}).execute()
    assert created["name"].startswith(f"projects/{PROJECT}/alertPolicies/") and created["enabled"] is True
    assert policies.get(name=created["name"]).execute()["displayName"] == RATIO_POLICY["displayName"]
    found = policies.list(name=f"projects/{PROJECT}", filter='display_name="api 5xx ratio > 10%"').execute()
    assert [p["name"] for p in found["alertPolicies"]] == [created["name"]]
    none = policies.list(name=f"projects/{PROJECT}", filter='display_name="other"').execute()
    assert none.get("alertPolicies", []) == []
    bad = json.loads(json.dumps(RATIO_POLICY))
    bad["conditions"][0]["conditionThreshold"]["duration"] = "90s"
    with pytest.raises(HttpError) as err:
        policies.create(name=f"projects/{PROJECT}", body=bad).execute()
    assert err.value.status_code == 400 and "duration" in err.value.reason
    with pytest.raises(HttpError) as err:
        policies.create(name=f"projects/{PROJECT}",
                        body=RATIO_POLICY | {"notificationChannels": [f"projects/{PROJECT}/notificationChannels/1"]}
                        ).execute()
    assert err.value.status_code == 400 and "notificationChannels" in err.value.reason
    policies.delete(name=created["name"]).execute()
    with pytest.raises(HttpError) as err:
        policies.get(name=created["name"]).execute()
    assert err.value.status_code == 404
    assert [m["method"] for m in mutations(sim)] == ["POST", "DELETE"]


def test_alert_policy_patch(sim):
    policies = discovery(sim, "monitoring", "v3").projects().alertPolicies()
    created = policies.create(name=f"projects/{PROJECT}", body=RATIO_POLICY).execute()
    seq = mutations(sim)[-1]["seq"]
    patched = policies.patch(name=created["name"], updateMask="display_name,enabled",
                             body={"displayName": "api 5xx ratio > 5%", "enabled": False}).execute()
    assert (patched["displayName"], patched["enabled"]) == ("api 5xx ratio > 5%", False)
    assert patched["conditions"] == created["conditions"]  # outside the mask: untouched
    assert patched["creationRecord"] == created["creationRecord"]
    assert policies.get(name=created["name"]).execute()["displayName"] == "api 5xx ratio > 5%"
    again = policies.patch(name=created["name"], updateMask="display_name",
                           body={"displayName": "api 5xx ratio > 5%"}).execute()
    assert again == patched  # an identical patch changes nothing
    with pytest.raises(HttpError) as err:
        policies.patch(name=created["name"], updateMask="conditions", body={"conditions": []}).execute()
    assert err.value.status_code == 400 and "conditions" in err.value.reason
    logged = mutations(sim, since=seq)
    assert [(m["method"], m["resource"]) for m in logged] == [("PATCH", created["name"])]
    assert (logged[0]["before"]["enabled"], logged[0]["after"]["enabled"]) == (True, False)
