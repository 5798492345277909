"""Cloud Run: deploy, route traffic, restore (both), start failure, delete old revisions."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.cloud_run import CloudRunActivities, read_service, short
from runbook.activity_io import DeleteOldRevisionsParams, DeployRevisionParams, RouteTrafficParams

from .conftest import Runner
from .world import BACKEND, BACKEND_NAME, P, R, compensation, resource

DEPLOY = DeployRevisionParams(project=P, region=R, service=BACKEND,
                              env={"DATABASE_POOL_SIZE": "8", "VPC_CONNECTOR_SCALING_BUFFER": "30"},
                              cpu="4", memory="6Gi", min_instances=2, max_instances=15,
                              timeout_s=900)
ROUTE = RouteTrafficParams(project=P, region=R, service=BACKEND)
SPLIT = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
          "revision": "netra-backend-staging-00001-nty", "percent": 50},
         {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
          "revision": "netra-backend-staging-00002-ach", "percent": 50}]


def spec(state) -> dict:
    svc = resource(state, "run", BACKEND_NAME)
    return {"template": svc["template"], "traffic": svc["traffic"]}


def env_of(template: dict) -> dict:
    return {e["name"]: e.get("value") for e in template["containers"][0].get("env", [])}


async def test_deploy_then_route_then_restore_both(sim, clients, runner) -> None:
    acts = CloudRunActivities(clients)
    original = spec(sim.state())

    deployed = await runner(acts.deploy_revision, DEPLOY)
    assert deployed.changed and deployed.resource == BACKEND_NAME
    assert deployed.before["traffic"] == SPLIT
    assert deployed.before["template"] == original["template"]
    tpl = deployed.after["template"]
    assert env_of(tpl)["DATABASE_POOL_SIZE"] == "8" and env_of(tpl)["ENVIRONMENT"] == "staging"
    assert tpl["containers"][0]["resources"]["limits"] == {"cpu": "4", "memory": "6Gi"}
    assert tpl["scaling"] == {"minInstanceCount": 2, "maxInstanceCount": 15}
    assert tpl["timeout"] == "900s"
    new_rev = deployed.data["revision"]
    assert new_rev == deployed.after["latestReadyRevision"]
    assert new_rev != deployed.before["latestReadyRevision"]
    # Secret references in the env survive the update untouched.
    refs = [e for e in tpl["containers"][0]["env"] if "valueSource" in e]
    assert {e["name"] for e in refs} >= {"DATABASE_URL", "JWT_SECRET_KEY"}

    again = await Runner()(acts.deploy_revision, DEPLOY)
    assert not again.changed
    assert len(sim.mutations(api="run", method="PATCH")) == 1

    routed = await Runner()(acts.route_traffic_to_latest, ROUTE)
    assert routed.changed and routed.before["traffic"] == SPLIT
    assert routed.after["traffic"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST",
                                        "percent": 100}]
    assert routed.data["revision"] == new_rev
    assert not (await Runner()(acts.route_traffic_to_latest, ROUTE)).changed

    # Compensations in reverse order put the recorded template and traffic back exactly.
    undo_route = await Runner(activity_id="u1")(
        acts.restore_service, compensation("route-traffic", ROUTE, routed))
    assert undo_route.changed and spec(sim.state())["traffic"] == SPLIT
    undo_deploy = await Runner(activity_id="u2")(
        acts.restore_service, compensation("deploy", DEPLOY, deployed))
    assert undo_deploy.changed
    assert spec(sim.state()) == original
    again = await Runner(activity_id="u2")(acts.restore_service,
                                           compensation("deploy", DEPLOY, deployed))
    assert not again.changed
    assert len(sim.mutations(api="run", method="PATCH")) == 4


async def test_revision_that_fails_to_start_is_rolled_back_inside_the_activity(
        sim, clients, runner) -> None:
    acts = CloudRunActivities(clients)
    original = spec(sim.state())
    sim.fault(api="run", kind="revision_start_failure", resource=BACKEND)
    with pytest.raises(ApplicationError) as err:
        await runner(acts.deploy_revision, DEPLOY)
    assert err.value.type == "OperationFailed" and err.value.non_retryable
    assert "failed to start" in err.value.message and "restored" in err.value.message
    checkpoint = err.value.details[0]
    assert checkpoint["resource"] == BACKEND_NAME and checkpoint["before"]["traffic"] == SPLIT
    after = spec(sim.state())
    assert after == original
    svc = read_service(clients, BACKEND_NAME)
    assert svc["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"


async def test_resume_after_crash_mid_rollout(sim, clients) -> None:
    acts = CloudRunActivities(clients)
    first = Runner()
    err = await first.run_until_operation(acts.deploy_revision, DEPLOY)
    assert isinstance(err, ApplicationError) and err.type == "Cancelled"
    checkpoint = first.last_checkpoint()
    second = Runner(attempt=3, heartbeat_details=[checkpoint])
    out = await second(acts.deploy_revision, DEPLOY)
    assert out.changed and out.attempt == 3 and out.before == checkpoint["before"]
    assert len(sim.mutations(api="run", method="PATCH")) == 1


async def test_delete_old_revisions_keeps_only_what_serves(sim, clients, runner) -> None:
    acts = CloudRunActivities(clients)
    # While both revisions split traffic nothing may be deleted.
    noop = await runner(acts.delete_old_revisions,
                        DeleteOldRevisionsParams(project=P, region=R, service=BACKEND))
    assert not noop.changed
    assert sorted(noop.after["revisions"]) == sorted(short(s["revision"]) for s in SPLIT)
    await Runner()(acts.route_traffic_to_latest, ROUTE)
    out = await Runner()(acts.delete_old_revisions,
                         DeleteOldRevisionsParams(project=P, region=R, service=BACKEND))
    assert out.changed and out.data["deleted"] == ["netra-backend-staging-00001-nty"]
    assert out.after == {"revisions": ["netra-backend-staging-00002-ach"]}
    assert [m["resource"].rsplit("/", 1)[-1] for m in sim.mutations(api="run", method="DELETE")] \
        == ["netra-backend-staging-00001-nty"]
    assert not (await Runner()(acts.delete_old_revisions,
                               DeleteOldRevisionsParams(project=P, region=R,
                                                        service=BACKEND))).changed


async def test_invalid_cpu_is_refused_naming_the_field(sim, clients, runner) -> None:
    acts = CloudRunActivities(clients)
    with pytest.raises(ApplicationError) as err:
        await runner(acts.deploy_revision, DEPLOY.model_copy(update={"cpu": "3"}))
    assert err.value.type == "InvalidArgument" and err.value.non_retryable
    assert "resources.limits.cpu" in err.value.message
    assert sim.mutations(api="run") == []
