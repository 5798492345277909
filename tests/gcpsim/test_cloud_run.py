"""Cloud Run v2 through the real google-cloud-run REST clients."""
from __future__ import annotations

import json
import time

import pytest
from gcpsim_helpers import BACKEND, LOC, add_fault, advance, gapic_options, mutations, raw
from google.api_core import exceptions
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import json_format

from gcpsim.launcher import start_simulator

LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


@pytest.fixture
def clients(sim):
    return run_v2.ServicesClient(**gapic_options(sim)), run_v2.RevisionsClient(**gapic_options(sim))


@pytest.fixture(scope="module")
def slow_sim(tmp_path_factory):
    """Simulated time at real speed: a 10 s operation stays observably in flight."""
    with start_simulator(data_dir=tmp_path_factory.mktemp("gcpsim-slow"), speed=1.0) as sim:
        yield sim


def quick_start(sim, state=None) -> None:
    """For tests that are not about slow starts (test_startup_probe.py is): the backend's
    container answers its (default) startup probe after 30 s whatever the outage, instead of
    300 s plus 420 s while the connector or Cloud SQL is saturated (the default world)."""
    state = state or sim.admin("GET", "/_sim/state")
    state["app"]["routes"]["backend"]["startup_seconds"] = 30
    state["app"]["routes"]["backend"]["startup_saturated_extra_seconds"] = 0
    sim.admin("POST", "/_sim/reset", state)


def _set_env(svc: run_v2.Service, **env: str) -> None:
    c = svc.template.containers[0]
    keep = [e for e in c.env if e.name not in env]
    del c.env[:]
    c.env.extend(keep + [run_v2.EnvVar(name=k, value=v) for k, v in env.items()])


def _latest_100(svc: run_v2.Service) -> None:
    del svc.traffic[:]
    svc.traffic.append(run_v2.TrafficTarget(type_=LATEST, percent=100))


def test_default_service_and_strict_payloads(sim, clients):
    services, revisions = clients
    svc = services.get_service(name=BACKEND)
    assert svc.generation == svc.observed_generation == 2
    assert svc.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    assert svc.latest_ready_revision == svc.latest_created_revision
    assert svc.latest_ready_revision.startswith(BACKEND + "/revisions/netra-backend-staging-00002-")
    assert sorted(t.percent for t in svc.traffic_statuses) == [50, 50]
    assert svc.template.vpc_access.connector.endswith("/connectors/staging-connector")
    assert svc.uri.startswith("https://netra-backend-staging-")
    # Every payload must parse with ignore_unknown_fields=False (as the LRO client does).
    _, body = raw(sim, "GET", f"/v2/{BACKEND}")
    run_v2.Service.from_json(json.dumps(body), ignore_unknown_fields=False)
    _, listing = raw(sim, "GET", f"/v2/{BACKEND}/revisions")
    for rev in listing["revisions"]:
        run_v2.Revision.from_json(json.dumps(rev), ignore_unknown_fields=False)
    assert {c["type"] for c in listing["revisions"][0]["conditions"]} >= {"Ready", "Active"}


def test_update_creates_revision_and_moves_traffic_when_ready(sim, clients):
    quick_start(sim)
    services, _ = clients
    svc = services.get_service(name=BACKEND)
    old_ready = svc.latest_ready_revision
    _set_env(svc, DATABASE_POOL_SIZE="8", DATABASE_MAX_OVERFLOW="8")
    _latest_100(svc)
    op = services.update_service(service=svc)  # output-only fields are sent back, ignored
    pending = services.get_service(name=BACKEND)
    assert pending.generation == 3 and pending.observed_generation == 2 and pending.reconciling
    assert pending.latest_created_revision.split("/")[-1].startswith("netra-backend-staging-00003-")
    assert pending.latest_ready_revision == old_ready
    assert sorted(t.percent for t in pending.traffic_statuses) == [50, 50]  # not moved yet
    # Strict Operation parse of the in-flight operation (metadata = Service).
    _, op_json = raw(sim, "GET", f"/v2/{op.operation.name}")
    json_format.Parse(json.dumps(op_json), operations_pb2.Operation(), ignore_unknown_fields=False)
    assert set(op_json) <= {"name", "metadata", "done", "response", "error"}

    advance(sim, 60)
    result = op.result(timeout=30)
    assert result.latest_ready_revision == pending.latest_created_revision
    assert [(t.revision, t.percent) for t in result.traffic_statuses] == [
        (pending.latest_created_revision.split("/")[-1], 100)]
    assert result.observed_generation == 3
    logged = [m for m in mutations(sim) if m["api"] == "run"]
    assert len(logged) == 1 and logged[0]["method"] == "PATCH" and logged[0]["resource"] == BACKEND


def test_traffic_to_unready_revision_refused(sim, clients):
    quick_start(sim)
    services, _ = clients
    svc = services.get_service(name=BACKEND)
    _set_env(svc, FEATURE="on")
    op = services.update_service(service=svc)
    new_rev = services.get_service(name=BACKEND).latest_created_revision.split("/")[-1]
    again = services.get_service(name=BACKEND)
    del again.traffic[:]
    again.traffic.append(run_v2.TrafficTarget(type_=REVISION, revision=new_rev, percent=100))
    with pytest.raises(exceptions.BadRequest) as err:
        services.update_service(service=again)
    assert "not ready" in err.value.message and err.value.code == 400
    advance(sim, 60)
    op.result(timeout=30)
    ok = services.update_service(service=again)  # ready now: accepted
    advance(sim, 30)
    assert [(t.revision, t.percent) for t in ok.result(timeout=30).traffic_statuses] == [(new_rev, 100)]


@pytest.mark.parametrize("how", ["slow_start", "injected_fault"])
def test_failed_revision_keeps_traffic(sim, clients, how):
    services, _ = clients
    svc = services.get_service(name=BACKEND)
    before = [(t.revision, t.percent) for t in svc.traffic_statuses]
    if how == "injected_fault":
        quick_start(sim)
        add_fault(sim, kind="revision_start_failure", api="run", resource="netra-backend-staging")
    _set_env(svc, FEATURE="x")  # slow_start: 300 + 420 s (outage) to start vs the default probe's 240 s
    _latest_100(svc)
    op = services.update_service(service=svc)
    advance(sim, 250)
    with pytest.raises(exceptions.FailedPrecondition) as err:
        op.result(timeout=30)
    assert err.value.grpc_status_code is not None and "not ready" in err.value.message
    after = services.get_service(name=BACKEND)
    assert [(t.revision, t.percent) for t in after.traffic_statuses] == before
    assert after.latest_ready_revision == svc.latest_ready_revision
    assert after.terminal_condition.state == run_v2.Condition.State.CONDITION_FAILED


def test_revisions_paging_delete_and_serving_refusal(slow_sim):
    sim = slow_sim
    sim.admin("POST", "/_sim/reset")
    services, revisions = run_v2.ServicesClient(**gapic_options(sim)), run_v2.RevisionsClient(**gapic_options(sim))
    pager = revisions.list_revisions(request=run_v2.ListRevisionsRequest(parent=BACKEND, page_size=1))
    names = [r.name for r in pager]
    assert len(names) == 2 and names[0] > names[1]  # newest first, two pages followed
    with pytest.raises(exceptions.BadRequest) as err:
        revisions.delete_revision(name=names[1])  # serving 50%
    assert "serving traffic" in err.value.message
    # Route everything to the newest revision, then the old one can go.
    svc = services.get_service(name=BACKEND)
    _latest_100(svc)
    services.update_service(service=svc)
    advance(sim, 30)
    seq = mutations(sim)[-1]["seq"]
    op = revisions.delete_revision(name=names[1])
    assert not op.done()
    _, op_json = raw(sim, "GET", f"/v2/{op.operation.name}")
    assert op_json["metadata"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Revision"
    advance(sim, 30)
    deleted = op.result(timeout=30)
    assert deleted.name == names[1]
    with pytest.raises(exceptions.NotFound):
        revisions.get_revision(name=names[1])
    logged = mutations(sim, since=seq)
    assert [(m["method"], m["resource"], m["after"]) for m in logged] == [("DELETE", names[1], None)]


def test_idempotent_repeat_mask_validate_only_and_operations(sim, clients):
    services, _ = clients
    svc = services.get_service(name=BACKEND)
    op = services.update_service(service=svc)  # identical: nothing changes
    assert op.done() and op.result().generation == 2
    assert mutations(sim) == []
    # updateMask=labels: the changed template in the body is ignored.
    svc.labels["team"] = "platform"
    _set_env(svc, IGNORED="1")
    op = services.update_service(request=run_v2.UpdateServiceRequest(service=svc, update_mask={"paths": ["labels"]}))
    advance(sim, 30)
    res = op.result(timeout=30)
    assert res.labels["team"] == "platform" and res.latest_created_revision == svc.latest_created_revision
    assert "IGNORED" not in [e.name for e in res.template.containers[0].env]
    # validateOnly: accepted, nothing stored.
    _set_env(svc, OTHER="1")
    op = services.update_service(request=run_v2.UpdateServiceRequest(service=svc, validate_only=True))
    assert op.done() and services.get_service(name=BACKEND).generation == 3
    # Operations mixins: get / list / wait.
    name = op.operation.name
    ops = services.list_operations(operations_pb2.ListOperationsRequest(name=LOC))
    assert len(ops.operations) >= 1
    got = services.get_operation(operations_pb2.GetOperationRequest(name=ops.operations[0].name))
    assert got.done
    waited = services.wait_operation(operations_pb2.WaitOperationRequest(name=ops.operations[0].name))
    assert waited.done and waited.name == ops.operations[0].name
    assert name not in [o.name for o in ops.operations]  # validateOnly stored nothing


def test_wait_blocks_until_a_pending_operation_is_done(sim, clients):
    quick_start(sim)
    services, _ = clients
    svc = services.get_service(name=BACKEND)
    _set_env(svc, FEATURE="on")
    op = services.update_service(service=svc)  # a new revision: a 45 s (simulated) rollout
    assert not op.operation.done
    started = time.monotonic()
    waited = services.wait_operation(operations_pb2.WaitOperationRequest(
        name=op.operation.name, timeout={"seconds": 30}))
    assert waited.done and waited.name == op.operation.name and not waited.error.code
    assert time.monotonic() - started < 10  # it ended with the rollout, not at the timeout
    assert services.get_service(name=BACKEND).latest_ready_revision == op.metadata.latest_created_revision


def test_short_secret_names_resolve_in_the_services_project(sim, clients):
    state = sim.admin("GET", "/_sim/state")
    state["projects"].insert(0, {"projectId": "other-project", "projectNumber": "999999999999"})
    quick_start(sim, state)
    services, _ = clients
    svc = services.get_service(name=BACKEND)
    refs = [e.value_source.secret_key_ref.secret for e in svc.template.containers[0].env if e.value_source]
    assert "database-url" in refs  # short names: they live in netra-staging, not the first project
    _set_env(svc, FEATURE="on")
    op = services.update_service(service=svc)
    advance(sim, 60)
    assert op.result(timeout=30).latest_ready_revision == op.metadata.latest_created_revision


def test_bad_input_is_invalid_argument(sim, clients):
    services, _ = clients
    svc = services.get_service(name=BACKEND)
    svc.template.containers[0].resources.limits["memory"] = "64Gi"
    with pytest.raises(exceptions.BadRequest) as err:
        services.update_service(service=svc)
    assert "memory" in err.value.message
    svc = services.get_service(name=BACKEND)
    del svc.traffic[:]
    svc.traffic.append(run_v2.TrafficTarget(type_=LATEST, percent=60))
    with pytest.raises(exceptions.BadRequest) as err:
        services.update_service(service=svc)
    assert "add up to 100" in err.value.message
    with pytest.raises(exceptions.NotFound):
        services.get_service(name=f"{LOC}/services/nope", retry=None)


def test_integer_enums_and_output_only_fields_accepted(sim):
    quick_start(sim)
    _, svc = raw(sim, "GET", f"/v2/{BACKEND}")
    body = dict(svc)  # output-only fields (uid, generation, conditions, etag...) sent back
    body["traffic"] = [{"type": 1, "percent": 100}]  # 1 = LATEST
    body["template"]["vpcAccess"]["egress"] = 1  # 1 = ALL_TRAFFIC
    status, op = raw(sim, "PATCH", f"/v2/{BACKEND}?updateMask=traffic,template", body)
    assert status == 200 and op["done"] is False
    advance(sim, 60)
    _, svc = raw(sim, "GET", f"/v2/{BACKEND}")
    assert svc["template"]["vpcAccess"]["egress"] == "ALL_TRAFFIC"
    assert svc["traffic"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
    assert svc["trafficStatuses"][0]["revision"] == svc["latestReadyRevision"].rsplit("/", 1)[-1]
