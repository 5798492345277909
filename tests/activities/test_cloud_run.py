"""Cloud Run: deploy (startup probe, VPC access), route traffic, restore by re-routing
(GCP_FIDELITY A10) or by redeploying when a revision is gone, start failure, cleanup."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.clients import short
from activities.cloud_run import CloudRunActivities, read_service
from runbook.activity_io import (
    DeleteOldRevisionsParams,
    DeployRevisionParams,
    RouteTrafficParams,
    StartupProbe,
)

from .conftest import Runner
from .world import (
    BACKEND,
    BACKEND_NAME,
    CONNECTOR,
    CONNECTOR_NAME,
    P,
    R,
    compensation,
    remediate_infrastructure,
    resource,
)

AUTH = "auth-staging"
AUTH_NAME = f"projects/{P}/locations/{R}/services/{AUTH}"
# The backend container takes 300 simulated s to answer with healthy dependencies and
# 300 + 420 s while the connector or Cloud SQL is saturated (seeds 002-004). The default TCP
# startup probe (240 s) fails it either way; this one, the longest Cloud Run allows
# (240 + 24 x 10 = 480 s), lets it start once the connector and Cloud SQL are remediated.
PROBE = StartupProbe(path="/health", initial_delay_s=240, period_s=10, timeout_s=5,
                     failure_threshold=24)
DEPLOY = DeployRevisionParams(project=P, region=R, service=BACKEND,
                              env={"DATABASE_POOL_SIZE": "8", "VPC_CONNECTOR_SCALING_BUFFER": "30"},
                              cpu="4", memory="6Gi", min_instances=2, max_instances=15,
                              timeout_s=900, startup_probe=PROBE)
AUTH_VPC = DeployRevisionParams(project=P, region=R, service=AUTH, vpc_connector=CONNECTOR,
                                vpc_egress="PRIVATE_RANGES_ONLY")
ROUTE = RouteTrafficParams(project=P, region=R, service=BACKEND)
SPLIT = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
          "revision": "netra-backend-staging-00001-nty", "percent": 50},
         {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
          "revision": "netra-backend-staging-00002-ach", "percent": 50}]
SPLIT_SERVING = {"netra-backend-staging-00001-nty": 50, "netra-backend-staging-00002-ach": 50}


def spec(state, name: str = BACKEND_NAME) -> dict:
    svc = resource(state, "run", name)
    return {"template": svc["template"], "traffic": svc["traffic"]}


def serving(state, name: str = BACKEND_NAME) -> dict[str, int]:
    svc = resource(state, "run", name)
    return {t["revision"]: t["percent"] for t in svc["trafficStatuses"] if t.get("percent")}


def revisions(state, name: str) -> list[str]:
    return sorted(k.rsplit("/", 1)[-1] for k in state["run"] if k.startswith(name + "/revisions/"))


def env_of(template: dict) -> dict:
    return {e["name"]: e.get("value") for e in template["containers"][0].get("env", [])}


def new_revisions(sim) -> int:
    """How many of the simulator's recorded PATCHes created a revision."""
    return sum(1 for m in sim.mutations(api="run", method="PATCH")
               if (m["after"] or {}).get("latestCreatedRevision")
               != (m["before"] or {}).get("latestCreatedRevision"))


async def test_deploy_with_startup_probe_then_route_then_restore_by_routing(
        sim, clients, runner) -> None:
    acts = CloudRunActivities(clients)
    await remediate_infrastructure(clients)
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
    probe = tpl["containers"][0]["startupProbe"]
    assert probe["httpGet"] == {"path": "/health", "port": 8080}
    assert (probe["initialDelaySeconds"], probe["periodSeconds"], probe["timeoutSeconds"],
            probe["failureThreshold"]) == (240, 10, 5, 24)
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
    assert new_revisions(sim) == 1

    # A10: the rollback routes traffic back to the revisions that served, no new revision.
    undo_route = await Runner(activity_id="u1")(
        acts.restore_service, compensation("route-traffic", ROUTE, routed))
    assert undo_route.changed and undo_route.data["restored_by"] == "traffic"
    assert "traffic routed back to" in undo_route.detail and "no new revision" in undo_route.detail
    state = sim.state()
    assert spec(state)["traffic"] == SPLIT and serving(state) == SPLIT_SERVING
    # The deploy's undo finds traffic already where it was: nothing to change, and says
    # that the template still holds the deploy's configuration.
    undo_deploy = await Runner(activity_id="u2")(
        acts.restore_service, compensation("deploy", DEPLOY, deployed))
    assert not undo_deploy.changed and undo_deploy.data["restored_by"] == "traffic"
    assert "template still holds the step's configuration" in undo_deploy.detail
    assert spec(sim.state())["traffic"] == SPLIT
    assert spec(sim.state())["template"] == deployed.after["template"]
    assert len(sim.mutations(api="run", method="PATCH")) == 3
    assert new_revisions(sim) == 1  # only the deploy made one
    assert revisions(sim.state(), BACKEND_NAME) == sorted(
        ["netra-backend-staging-00001-nty", "netra-backend-staging-00002-ach", new_rev])


async def test_vpc_access_deploy_then_restore_pins_the_old_latest(sim, clients, runner) -> None:
    acts = CloudRunActivities(clients)
    before = sim.state()
    old_rev = short(resource(before, "run", AUTH_NAME)["latestReadyRevision"])
    assert resource(before, "run", AUTH_NAME)["template"]["vpcAccess"]["egress"] == "ALL_TRAFFIC"

    out = await runner(acts.deploy_revision, AUTH_VPC)
    assert out.changed
    assert out.after["template"]["vpcAccess"] == {"connector": CONNECTOR_NAME,
                                                  "egress": "PRIVATE_RANGES_ONLY"}
    assert not (await Runner()(acts.deploy_revision, AUTH_VPC)).changed
    assert len(sim.mutations(api="run", method="PATCH")) == 1

    # Traffic was LATEST: it goes back to the revision LATEST resolved to then, pinned.
    undo = await Runner(activity_id="u")(acts.restore_service,
                                         compensation("auth-vpc", AUTH_VPC, out))
    assert undo.changed and undo.data["restored_by"] == "traffic"
    assert undo.data["serving"] == {old_rev: 100}
    state = sim.state()
    assert serving(state, AUTH_NAME) == {old_rev: 100}
    assert spec(state, AUTH_NAME)["traffic"] == [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": old_rev, "percent": 100}]
    assert new_revisions(sim) == 1
    # A repeat after a crash finds traffic already as recorded and changes nothing.
    again = await Runner(activity_id="u")(acts.restore_service,
                                          compensation("auth-vpc", AUTH_VPC, out))
    assert not again.changed and again.data["restored_by"] == "traffic"
    assert len(sim.mutations(api="run", method="PATCH")) == 2


async def test_restore_redeploys_the_old_template_when_its_revision_is_gone(
        sim, clients, runner) -> None:
    acts = CloudRunActivities(clients)
    original = spec(sim.state(), AUTH_NAME)
    out = await runner(acts.deploy_revision, AUTH_VPC)
    # Cleanup deletes the revision the record names.
    cleanup = await Runner()(acts.delete_old_revisions,
                             DeleteOldRevisionsParams(project=P, region=R, service=AUTH))
    assert cleanup.data["deleted"] == [out.before["latestReadyRevision"]]

    undo = await Runner(activity_id="u")(acts.restore_service,
                                         compensation("auth-vpc", AUTH_VPC, out))
    assert undo.changed and undo.data["restored_by"] == "redeploy"
    assert "old template redeployed as a new revision" in undo.detail
    state = sim.state()
    assert spec(state, AUTH_NAME) == original  # template back, LATEST 100%
    latest = short(resource(state, "run", AUTH_NAME)["latestReadyRevision"])
    assert latest not in (out.before["latestReadyRevision"], out.data["revision"])
    assert serving(state, AUTH_NAME) == {latest: 100}
    assert new_revisions(sim) == 2
    again = await Runner(activity_id="u")(acts.restore_service,
                                          compensation("auth-vpc", AUTH_VPC, out))
    assert not again.changed and again.data["restored_by"] == "redeploy"
    assert new_revisions(sim) == 2


async def test_too_short_startup_probe_fails_and_traffic_stays_put(sim, clients, runner) -> None:
    acts = CloudRunActivities(clients)
    original = spec(sim.state())
    short_probe = DEPLOY.model_copy(update={"startup_probe": StartupProbe(
        path="/health", period_s=10, timeout_s=5, failure_threshold=3)})  # 30 s < 720 s
    with pytest.raises(ApplicationError) as err:
        await runner(acts.deploy_revision, short_probe)
    assert err.value.type == "OperationFailed" and err.value.non_retryable
    assert "failed to start" in err.value.message and "startup probe" in err.value.message
    assert "no new revision" in err.value.message
    checkpoint, how = err.value.details[0], err.value.details[1]
    assert checkpoint["resource"] == BACKEND_NAME and checkpoint["before"]["traffic"] == SPLIT
    assert how == {"restored_by": "traffic"}
    state = sim.state()
    assert spec(state)["traffic"] == original["traffic"] and serving(state) == SPLIT_SERVING
    assert new_revisions(sim) == 1  # the failed one; the rollback made none


async def test_revision_that_fails_to_start_is_rolled_back_inside_the_activity(
        sim, clients, runner) -> None:
    acts = CloudRunActivities(clients)
    # auth-staging routes LATEST: the rollback pins the revision LATEST meant before.
    old_rev = short(resource(sim.state(), "run", AUTH_NAME)["latestReadyRevision"])
    sim.fault(api="run", kind="revision_start_failure", resource=AUTH)
    with pytest.raises(ApplicationError) as err:
        await runner(acts.deploy_revision, AUTH_VPC)
    assert err.value.type == "OperationFailed" and err.value.non_retryable
    assert "failed to start" in err.value.message
    assert f"traffic routed back to {old_rev} 100% (no new revision)" in err.value.message
    assert err.value.details[1] == {"restored_by": "traffic"}
    state = sim.state()
    assert serving(state, AUTH_NAME) == {old_rev: 100}
    svc = read_service(clients, AUTH_NAME)
    assert svc["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
    # The workflow's compensation after it finds nothing left to do.
    undo = await Runner(activity_id="u")(acts.restore_service, compensation(
        "auth-vpc", AUTH_VPC, _outcome_from(err.value.details[0])))
    assert not undo.changed and undo.data["restored_by"] == "traffic"


def _outcome_from(checkpoint: dict):
    from runbook.activity_io import StepOutcome
    return StepOutcome(changed=True, resource=checkpoint["resource"], before=checkpoint["before"])


async def test_resume_after_crash_mid_rollout(sim, clients) -> None:
    acts = CloudRunActivities(clients)
    await remediate_infrastructure(clients)  # else the revision cannot start within 480 s
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


async def test_crash_during_a_failed_deploys_self_restore_does_not_deploy_again(
        sim, clients, runner) -> None:
    """Issue 10 defect 1: the worker dies once the self-restore's update was accepted. The
    resumed attempt finishes the restore and keeps the first verdict; it never re-deploys,
    even though the fault is gone and a new deploy would now succeed."""
    acts = CloudRunActivities(clients)
    old_rev = short(resource(sim.state(), "run", AUTH_NAME)["latestReadyRevision"])
    sim.fault(api="run", kind="revision_start_failure", resource=AUTH)
    with pytest.raises(ApplicationError) as first:
        await runner(acts.deploy_revision, AUTH_VPC)
    # The heartbeat a dead worker would have left: the verdict, then the restore in flight.
    restoring = [d[0] for d in runner.heartbeats
                 if d and isinstance(d[0], dict) and d[0].get("failed") and d[0].get("operation")]
    assert restoring, "the verdict must be checkpointed before the restore's operation"
    patches = len(sim.mutations(api="run", method="PATCH"))
    resumed = Runner(attempt=2, heartbeat_details=[restoring[0]])
    with pytest.raises(ApplicationError) as second:
        await resumed(acts.deploy_revision, AUTH_VPC)
    assert len(sim.mutations(api="run", method="PATCH")) == patches  # nothing re-issued
    assert second.value.type == "OperationFailed" and second.value.non_retryable
    # The same verdict, naming the revision that failed first.
    verdict = first.value.message.split("; rolled back")[0]
    assert second.value.message.startswith(verdict)
    assert serving(sim.state(), AUTH_NAME) == {old_rev: 100}
    assert second.value.details[0]["before"] == first.value.details[0]["before"]
    # Heartbeats are throttled: the verdict may never have reached Temporal. Resumed from
    # the checkpoint before it, the attempt still reaches the verdict and deploys nothing.
    lost = {k: v for k, v in restoring[0].items() if k != "failed"}
    with pytest.raises(ApplicationError) as third:
        await Runner(attempt=3, heartbeat_details=[lost])(acts.deploy_revision, AUTH_VPC)
    assert third.value.type == "OperationFailed" and third.value.non_retryable
    assert "failed to start" in third.value.message
    assert len(sim.mutations(api="run", method="PATCH")) == patches


async def test_restore_whose_redeployed_revision_fails_stops_at_once_and_says_why(
        sim, clients, runner) -> None:
    """Issue 10 defect 3: re-sending a spec identical to the current one makes no new
    revision, so the undo must not retry it; it fails for good, naming the revision."""
    acts = CloudRunActivities(clients)
    out = await runner(acts.deploy_revision, AUTH_VPC)
    await Runner()(acts.delete_old_revisions,
                   DeleteOldRevisionsParams(project=P, region=R, service=AUTH))
    sim.fault(api="run", kind="revision_start_failure", resource=AUTH, count=5)
    for attempt in (1, 2):  # the retry finds the spec already sent and sends nothing
        with pytest.raises(ApplicationError) as err:
            await Runner(attempt=attempt, activity_id="u")(
                acts.restore_service, compensation("auth-vpc", AUTH_VPC, out))
        assert err.value.type == "OperationFailed" and err.value.non_retryable
        failed = short(read_service(clients, AUTH_NAME)["latestCreatedRevision"])
        assert f"as revision {failed}, which failed to start" in err.value.message
        assert "runbook rollback" in err.value.message
    assert new_revisions(sim) == 2  # the step's and the one failed restore, nothing more


async def test_route_traffic_after_a_failed_operation_reconciles_again(sim, clients) -> None:
    """The failed update left the spec at LATEST 100% and traffic on the old split: the
    retry must make Cloud Run reconcile again (the same spec would be no change)."""
    acts = CloudRunActivities(clients)
    sim.fault(api="run", kind="operation_error", method="PATCH", resource=BACKEND, code=13)
    first = Runner()
    with pytest.raises(ApplicationError) as err:
        await first(acts.route_traffic_to_latest, ROUTE)
    assert err.value.type == "OperationFailed" and not err.value.non_retryable
    checkpoint = first.last_checkpoint()
    assert checkpoint["failed_operations"]
    out = await Runner(attempt=2, heartbeat_details=[checkpoint])(acts.route_traffic_to_latest,
                                                                  ROUTE)
    assert out.changed and out.before == checkpoint["before"]
    svc = read_service(clients, BACKEND_NAME)
    assert svc["traffic"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
    assert list(serving(sim.state()).values()) == [100]
