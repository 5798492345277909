"""scale_connector: happy path, idempotence, refusals, crash-resume, operation errors."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.vpc_access import VpcAccessActivities, read_connector
from runbook.activity_io import ScaleConnectorParams

from .conftest import Runner
from .world import CONNECTOR, CONNECTOR_NAME, P, R

DESIRED = ScaleConnectorParams(project=P, region=R, connector=CONNECTOR,
                               machine_type="e2-standard-4", min_instances=3, max_instances=10)


async def test_scale_then_repeat_is_a_noop(sim, clients, runner) -> None:
    acts = VpcAccessActivities(clients)
    out = await runner(acts.scale_connector, DESIRED)
    assert out.changed and out.resource == CONNECTOR_NAME
    assert out.before == {"machineType": "e2-micro", "minInstances": 2, "maxInstances": 3}
    assert out.after == {"machineType": "e2-standard-4", "minInstances": 3, "maxInstances": 10}
    assert read_connector(clients, CONNECTOR_NAME)["state"] == "READY"
    # The checkpoint was heartbeated before the PATCH, then again with its operation.
    checkpoints = [h[0] for h in runner.heartbeats if h and isinstance(h[0], dict)]
    assert checkpoints[0] == {"resource": CONNECTOR_NAME, "before": out.before, "operation": None}
    assert checkpoints[-1]["operation"]

    again = await Runner()(acts.scale_connector, DESIRED)
    assert not again.changed and again.after == out.after
    assert len(sim.mutations(api="vpcaccess", method="PATCH")) == 1


async def test_shrinking_is_refused_by_the_api_as_invalid_argument(sim, clients, runner) -> None:
    acts = VpcAccessActivities(clients)
    await runner(acts.scale_connector, DESIRED)
    shrink = DESIRED.model_copy(update={"min_instances": 2})
    with pytest.raises(ApplicationError) as err:
        await Runner()(acts.scale_connector, shrink)
    assert err.value.type == "InvalidArgument" and err.value.non_retryable
    assert "minInstances" in err.value.message and CONNECTOR_NAME in err.value.message
    # The PATCH itself was refused: nothing changed, so no checkpoint claims a change.
    assert not any(isinstance(d, dict) and "before" in d for d in err.value.details)


async def test_resume_after_crash_mid_operation_waits_on_the_same_operation(sim, clients) -> None:
    acts = VpcAccessActivities(clients)
    sim.fault(api="vpcaccess", kind="operation_hang", method="PATCH", resource=CONNECTOR)
    first = Runner()
    err = await first.run_until_operation(acts.scale_connector, DESIRED)
    assert isinstance(err, ApplicationError) and err.type == "Cancelled" and err.non_retryable
    checkpoint = first.last_checkpoint()
    assert err.details[0] == checkpoint and checkpoint["operation"]
    assert read_connector(clients, CONNECTOR_NAME)["state"] == "UPDATING"

    # A retried attempt with a hung operation keeps waiting on it (never a second PATCH):
    # cancel it too, then check nothing new was sent.
    second = Runner(attempt=2, heartbeat_details=[checkpoint])
    err2 = await second.run_until_operation(acts.scale_connector, DESIRED, timeout=1)
    assert isinstance(err2, ApplicationError)
    assert err2.details[0]["operation"] == checkpoint["operation"]
    assert sim.mutations(api="vpcaccess") == []


async def test_resume_after_cancel_mid_wait_finishes_without_reapplying(sim, clients) -> None:
    acts = VpcAccessActivities(clients)
    first = Runner()
    err = await first.run_until_operation(acts.scale_connector, DESIRED)
    assert isinstance(err, ApplicationError) and err.type == "Cancelled"
    checkpoint = first.last_checkpoint()

    second = Runner(attempt=2, heartbeat_details=[checkpoint])
    out = await second(acts.scale_connector, DESIRED)
    assert out.changed and out.attempt == 2
    assert out.before == checkpoint["before"] == {"machineType": "e2-micro", "minInstances": 2,
                                                  "maxInstances": 3}
    assert len(sim.mutations(api="vpcaccess", method="PATCH")) == 1


@pytest.mark.parametrize("code,retryable", [(14, True), (9, False)])
async def test_operation_error_maps_by_grpc_code(sim, clients, runner, code, retryable) -> None:
    acts = VpcAccessActivities(clients)
    sim.fault(api="vpcaccess", kind="operation_error", method="PATCH", code=code)
    with pytest.raises(ApplicationError) as err:
        await runner(acts.scale_connector, DESIRED)
    assert err.value.type == "OperationFailed"
    assert err.value.non_retryable is (not retryable)
    assert err.value.details[0]["operation"] and err.value.details[0]["resource"] == CONNECTOR_NAME
    assert sim.mutations(api="vpcaccess") == []


@pytest.mark.parametrize("status,type_,retryable", [
    (429, "RateLimited", True), (503, "Unavailable", True),
    (403, "PermissionDenied", False), (400, "InvalidArgument", False),
    (404, "NotFound", False),
])
async def test_http_faults_map_to_types(sim, clients, runner, status, type_, retryable) -> None:
    acts = VpcAccessActivities(clients)
    # The GAPIC read of the connector: the library's own retry is off, so one fault fails
    # the attempt and Temporal decides.
    sim.fault(api="vpcaccess", kind="http", method="GET", resource=CONNECTOR, status=status)
    with pytest.raises(ApplicationError) as err:
        await runner(acts.scale_connector, DESIRED)
    assert err.value.type == type_ and err.value.non_retryable is (not retryable)
    assert CONNECTOR_NAME in err.value.message and str(status) in err.value.message
    fired = [f for f in sim.faults() if f["kind"] == "http"]
    assert fired[0]["fired"] == 1


async def test_unreachable_api_is_a_retryable_transport_error(runner) -> None:
    from activities.clients import GcpClients
    from activities.settings import Settings

    dead = GcpClients(Settings(gcp_endpoint="http://127.0.0.1:9", poll_interval_s=0.1))
    with pytest.raises(ApplicationError) as err:
        await runner(VpcAccessActivities(dead).scale_connector, DESIRED)
    assert err.value.type == "Transport" and not err.value.non_retryable
    assert CONNECTOR_NAME in err.value.message
