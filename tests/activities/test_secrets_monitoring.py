"""check_secrets (metadata only, never :access) and alert policies."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.monitoring import MonitoringActivities
from activities.secret_manager import SecretManagerActivities
from runbook.activity_io import AlertPolicyParams, CheckSecretsParams
from runbook.request import Targets

from .conftest import Runner
from .world import P, compensation

REQUIRED = Targets().required_secrets
POLICY = AlertPolicyParams(
    project=P, display_name="[1278] netra-backend-staging HTTP 5xx ratio > 10%",
    metric_filter='metric.type="run.googleapis.com/request_count" AND '
                  'metric.label.response_code_class="5xx"',
    denominator_filter='metric.type="run.googleapis.com/request_count"',
    threshold=0.1, severity="ERROR")


async def test_check_secrets_passes_and_never_reads_values(sim, clients, runner) -> None:
    sim.fault(api="secretmanager", kind="http", resource=":access", status=500, count=100)
    out = await runner(SecretManagerActivities(clients).check_secrets,
                       CheckSecretsParams(project=P, secrets=REQUIRED))
    assert not out.changed
    assert {s["name"]: s["latest_state"] for s in out.data["secrets"]} == \
        {name: "ENABLED" for name in REQUIRED}
    assert [f["fired"] for f in sim.faults()] == [0]  # :access was never called


async def test_check_secrets_lists_every_missing_or_disabled_secret(sim, clients, runner) -> None:
    # Seed a world whose database-url latest version is DISABLED (admin API, not a fake).
    world = sim.state()
    key = "projects/123456789012/secrets/database-url/versions/3"
    world["secretmanager"][key]["state"] = "DISABLED"
    sim.http.post("/_sim/reset", json=world).raise_for_status()
    sim.fault(api="secretmanager", kind="http", resource=":access", status=500, count=100)
    with pytest.raises(ApplicationError) as err:
        await runner(SecretManagerActivities(clients).check_secrets,
                     CheckSecretsParams(project=P, secrets=REQUIRED + ["stripe-key", "sendgrid"]))
    assert err.value.type == "StepFailed" and err.value.non_retryable
    msg = err.value.message
    assert "3 of 12" in msg and "database-url (latest version DISABLED)" in msg
    assert "stripe-key (missing)" in msg and "sendgrid (missing)" in msg
    assert [f["fired"] for f in sim.faults()] == [0]


async def test_secret_read_errors_map_through_the_error_map(sim, clients, runner) -> None:
    sim.fault(api="secretmanager", kind="http", status=403, resource="jwt-secret-staging")
    with pytest.raises(ApplicationError) as err:
        await runner(SecretManagerActivities(clients).check_secrets,
                     CheckSecretsParams(project=P, secrets=REQUIRED))
    assert err.value.type == "PermissionDenied" and err.value.non_retryable
    assert "jwt-secret-staging" in err.value.message


async def test_alert_policy_created_once_and_deleted_by_its_undo(sim, clients, runner) -> None:
    acts = MonitoringActivities(clients)
    out = await runner(acts.ensure_alert_policy, POLICY)
    assert out.changed and out.before == {"alertPolicy": "absent"}
    name = out.after["name"]
    assert name.startswith(f"projects/{P}/alertPolicies/")
    # The project's email channel was attached.
    created = sim.state()["monitoring"][name]
    assert created["notificationChannels"] and created["displayName"] == POLICY.display_name
    cond = created["conditions"][0]["conditionThreshold"]
    assert cond["denominatorFilter"] and cond["thresholdValue"] == 0.1

    again = await Runner()(acts.ensure_alert_policy, POLICY)
    assert not again.changed and again.after["name"] == name
    assert len(sim.mutations(api="monitoring", method="POST")) == 1

    keep = await Runner()(acts.delete_alert_policy, compensation("alert-1", POLICY, again))
    assert not keep.changed and name in sim.state()["monitoring"]
    gone = await Runner()(acts.delete_alert_policy, compensation("alert-1", POLICY, out))
    assert gone.changed and name not in sim.state()["monitoring"]
    assert not (await Runner()(acts.delete_alert_policy,
                               compensation("alert-1", POLICY, out))).changed


async def test_alert_policy_retry_after_create_does_not_duplicate(sim, clients, runner) -> None:
    acts = MonitoringActivities(clients)
    await runner(acts.ensure_alert_policy, POLICY)
    # A retried attempt whose first attempt heartbeated "absent" and then created it.
    checkpoint = [h[0] for h in runner.heartbeats if h][0]
    out = await Runner(attempt=2, heartbeat_details=[checkpoint])(acts.ensure_alert_policy, POLICY)
    assert out.changed and out.before == {"alertPolicy": "absent"} and out.attempt == 2
    assert len(sim.mutations(api="monitoring", method="POST")) == 1


async def test_invalid_duration_is_refused_naming_the_field(sim, clients, runner) -> None:
    acts = MonitoringActivities(clients)
    with pytest.raises(ApplicationError) as err:
        await runner(acts.ensure_alert_policy, POLICY.model_copy(update={"duration_s": 90}))
    assert err.value.type == "InvalidArgument" and "duration" in err.value.message


CONNECTOR_CPU = ('metric.type="vpcaccess.googleapis.com/connector/cpu/utilizations" AND '
                 'resource.type="vpc_access_connector" AND '
                 'resource.label.connector_name="staging-connector"')
CPU_POLICY = AlertPolicyParams(project=P, display_name="[1278] connector CPU p99 > 80%",
                               metric_filter=CONNECTOR_CPU, threshold=0.8,
                               aligner="ALIGN_PERCENTILE_99")


async def test_alert_policy_uses_the_step_aligner(sim, clients, runner) -> None:
    acts = MonitoringActivities(clients)
    out = await runner(acts.ensure_alert_policy, CPU_POLICY)
    assert out.changed
    cond = sim.state()["monitoring"][out.after["name"]]["conditions"][0]["conditionThreshold"]
    # A percentile of a DISTRIBUTION is a number: reduced by the worst series.
    assert cond["aggregations"] == [{"alignmentPeriod": "60s",
                                     "perSeriesAligner": "ALIGN_PERCENTILE_99",
                                     "crossSeriesReducer": "REDUCE_MAX"}]
    assert "denominatorAggregations" not in cond

    # The ratio policy: ALIGN_RATE on both sides, summed per service.
    ratio = await Runner()(acts.ensure_alert_policy, POLICY.model_copy(
        update={"aligner": "ALIGN_RATE"}))
    cond = sim.state()["monitoring"][ratio.after["name"]]["conditions"][0]["conditionThreshold"]
    expected = [{"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_RATE",
                 "crossSeriesReducer": "REDUCE_SUM",
                 "groupByFields": ["resource.label.service_name"]}]
    assert cond["aggregations"] == expected and cond["denominatorAggregations"] == expected

    # A mean is judged per series: no reducer adds the means of different databases up.
    backends = await Runner()(acts.ensure_alert_policy, AlertPolicyParams(
        project=P, display_name="[1278] db connections > 320", aligner="ALIGN_MEAN",
        metric_filter='metric.type="cloudsql.googleapis.com/database/postgresql/num_backends"',
        threshold=320))
    cond = sim.state()["monitoring"][backends.after["name"]]["conditions"][0]["conditionThreshold"]
    assert cond["aggregations"] == [{"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_MEAN"}]


async def test_aligner_that_does_not_fit_the_metric_is_refused_naming_it(sim, clients,
                                                                          runner) -> None:
    acts = MonitoringActivities(clients)
    with pytest.raises(ApplicationError) as err:
        await runner(acts.ensure_alert_policy, CPU_POLICY.model_copy(
            update={"aligner": "ALIGN_MEAN"}))
    assert err.value.type == "InvalidArgument" and err.value.non_retryable
    assert "vpcaccess.googleapis.com/connector/cpu/utilizations" in err.value.message
    assert "ALIGN_MEAN" in err.value.message and "DISTRIBUTION" in err.value.message
    # The create was refused: no checkpoint, nothing reported as changed or to undo.
    assert not any(isinstance(d, dict) and "before" in d for d in err.value.details)
    assert sim.mutations(api="monitoring") == []


async def test_policy_on_an_unknown_metric_is_not_found_naming_it(sim, clients, runner) -> None:
    custom = "custom.googleapis.com/netra/db_connection_time"
    with pytest.raises(ApplicationError) as err:
        await runner(MonitoringActivities(clients).ensure_alert_policy, CPU_POLICY.model_copy(
            update={"metric_filter": f'metric.type="{custom}"', "aligner": "ALIGN_MEAN"}))
    assert err.value.type == "NotFound" and err.value.non_retryable
    assert custom in err.value.message
