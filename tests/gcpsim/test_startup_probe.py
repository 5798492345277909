"""Cloud Run through the real run_v2 REST client: cpu/memory refused synchronously (A6), the
startup probe (A2) and rollback by re-routing traffic (A10)."""
from __future__ import annotations

import pytest
from gcpsim_helpers import (
    AUTH, BACKEND, MAX_PROBE, MAX_PROBE_WINDOW_S, advance, gapic_options, mutations, probe_window_s, raw,
    remediate_infrastructure,
)
from google.api_core import exceptions
from google.cloud import run_v2

LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
READY = run_v2.Condition.State.CONDITION_SUCCEEDED
FAILED = run_v2.Condition.State.CONDITION_FAILED


@pytest.fixture
def services(sim):
    return run_v2.ServicesClient(**gapic_options(sim))


def _revision_count(sim, service=BACKEND) -> int:
    return len(raw(sim, "GET", f"/v2/{service}/revisions")[1]["revisions"])


def _probe(svc: run_v2.Service, **fields) -> None:
    """An HTTP startup probe on /health: the longest Cloud Run allows (480 s) unless overridden."""
    spec = MAX_PROBE | {"http_get": run_v2.HTTPGetAction(path="/health")} | fields
    svc.template.containers[0].startup_probe = run_v2.Probe(**spec)


@pytest.mark.parametrize("cpu, memory, expected", [
    ("1", "6Gi", "For 1.0 CPU, memory must be between 512Mi and 4Gi inclusive."),
    ("4", "512Mi", "For 4.0 CPU, memory must be between 2Gi and 16Gi inclusive."),
    ("2", "12Gi", "For 2.0 CPU, memory must be between 512Mi and 8Gi inclusive."),
    ("8", "2Gi", "For 8.0 CPU, memory must be between 4Gi and 32Gi inclusive."),
    ("1", "256Mi", "For 1.0 CPU, memory must be between 512Mi and 4Gi inclusive."),  # gen2 minimum
])
def test_impossible_cpu_memory_refused_synchronously(sim, services, cpu, memory, expected):
    svc = services.get_service(name=BACKEND)
    svc.template.containers[0].resources.limits.update({"cpu": cpu, "memory": memory})
    with pytest.raises(exceptions.BadRequest) as err:
        services.update_service(service=svc)
    assert err.value.message.endswith(": spec.template.spec.containers[0].resources.limits.memory: Invalid value "
                                 f"specified for container memory. {expected}")
    assert services.get_service(name=BACKEND).generation == 2
    assert _revision_count(sim) == 2 and mutations(sim) == []


@pytest.mark.parametrize("cpu, memory", [("0.5", "1Gi"), ("4", "6Gi"), ("6", "24Gi"), ("2", "8Gi"),
                                         ("1", "128Mi")])
def test_possible_cpu_memory_accepted(sim, services, cpu, memory):
    svc = services.get_service(name=AUTH)
    svc.template.containers[0].resources.limits.update({"cpu": cpu, "memory": memory})
    if float(cpu) < 1 or memory == "128Mi":  # below 1 CPU: concurrency 1, first generation only
        svc.template.execution_environment = run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN1
        svc.template.max_instance_request_concurrency = 1
    op = services.update_service(service=svc)
    advance(sim, 60)
    assert op.result(timeout=30).terminal_condition.state == READY


def test_fractional_cpu_needs_concurrency_1_and_first_generation(sim, services):
    svc = services.get_service(name=AUTH)
    svc.template.containers[0].resources.limits.update({"cpu": "0.5", "memory": "512Mi"})
    with pytest.raises(exceptions.BadRequest) as err:
        services.update_service(service=svc)
    assert "maxInstanceRequestConcurrency" in err.value.message
    svc.template.max_instance_request_concurrency = 1
    with pytest.raises(exceptions.BadRequest) as err:  # the default world runs gen2
        services.update_service(service=svc)
    assert "first generation" in err.value.message
    svc.template.execution_environment = run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN1
    svc.template.containers[0].resources.limits["memory"] = "2Gi"
    with pytest.raises(exceptions.BadRequest) as err:
        services.update_service(service=svc)
    assert err.value.message.endswith("For 0.5 CPU, memory must be between 128Mi and 1Gi inclusive.")
    assert mutations(sim) == []


def test_startup_probe_is_stored_echoed_and_validated(sim, services):
    svc = services.get_service(name=AUTH)
    _probe(svc, initial_delay_seconds=0, failure_threshold=6)
    op = services.update_service(service=svc)
    advance(sim, 60)
    probe = op.result(timeout=30).template.containers[0].startup_probe
    assert (probe.period_seconds, probe.timeout_seconds, probe.failure_threshold, probe.http_get.path) == \
        (10, 5, 6, "/health")
    echoed = services.update_service(service=services.get_service(name=AUTH))  # sending it back: no change
    assert echoed.done() and len(mutations(sim)) == 1
    for bad, field in (({"period_seconds": 241}, "periodSeconds"), ({"initial_delay_seconds": 241},
                                                                    "initialDelaySeconds"),
                       ({"timeout_seconds": 20, "period_seconds": 10}, "timeoutSeconds")):
        svc = services.get_service(name=AUTH)
        _probe(svc, **bad)
        with pytest.raises(exceptions.BadRequest) as err:
            services.update_service(service=svc)
        assert f"startupProbe.{field}" in err.value.message
    _, body = raw(sim, "GET", f"/v2/{AUTH}")
    body["template"]["containers"][0]["startupProbe"] = {"failureThreshold": -1, "tcpSocket": {"port": 8080}}
    status, err = raw(sim, "PATCH", f"/v2/{AUTH}", body)
    assert status == 400 and "failureThreshold" in err["error"]["message"]
    body["template"]["containers"][0]["startupProbe"] = {"tcpSocket": {"port": 8080}, "httpGet": {"path": "/"}}
    assert raw(sim, "PATCH", f"/v2/{AUTH}", body)[0] == 400  # httpGet and tcpSocket are exclusive
    assert len(mutations(sim)) == 1


def _deploy_backend(services, probe: dict | None = None, **fields):
    """A new backend revision (env FEATURE=on) taking LATEST 100%, with ``_probe(**fields)``
    when ``probe`` is true, without a startup probe (Cloud Run's default) otherwise."""
    svc = services.get_service(name=BACKEND)
    svc.template.containers[0].env.append(run_v2.EnvVar(name="FEATURE", value="on"))
    if probe:
        _probe(svc, **fields)
    del svc.traffic[:]
    svc.traffic.append(run_v2.TrafficTarget(type_=LATEST, percent=100))
    return services.update_service(service=svc)


def _assert_start_failed(sim, services, op, old_traffic, message: str) -> None:
    with pytest.raises(exceptions.FailedPrecondition) as err:
        op.result(timeout=30)
    assert message in err.value.message
    failed = services.get_service(name=BACKEND)
    assert failed.terminal_condition.state == FAILED
    assert [(t.revision, t.percent) for t in failed.traffic_statuses] == old_traffic
    rev = run_v2.RevisionsClient(**gapic_options(sim)).get_revision(name=failed.latest_created_revision)
    ready = next(c for c in rev.conditions if c.type_ == "Ready")
    assert ready.state == FAILED and "startup probe" in ready.message


def test_probe_window_over_the_cap_is_refused_and_nothing_changes(sim, services):
    """Cloud Run caps failureThreshold x periodSeconds at 240 s: 90 x 10 is refused
    synchronously (400 INVALID_ARGUMENT), no revision, no mutation."""
    svc = services.get_service(name=BACKEND)
    _probe(svc, initial_delay_seconds=0, failure_threshold=90)
    with pytest.raises(exceptions.BadRequest) as err:
        services.update_service(service=svc)
    assert err.value.code == 400
    assert "failureThreshold * periodSeconds must not exceed 240 seconds" in err.value.message
    assert "startupProbe" in err.value.message
    _, body = raw(sim, "GET", f"/v2/{BACKEND}")
    body["template"]["containers"][0]["startupProbe"] = {"periodSeconds": 10, "failureThreshold": 90,
                                                         "httpGet": {"path": "/health"}}
    status, refusal = raw(sim, "PATCH", f"/v2/{BACKEND}", body)
    assert status == 400 and refusal["error"]["status"] == "INVALID_ARGUMENT"
    assert "failureThreshold * periodSeconds must not exceed 240 seconds" in refusal["error"]["message"]
    after = services.get_service(name=BACKEND)
    assert after.generation == 2 and not after.reconciling
    assert "startupProbe" not in raw(sim, "GET", f"/v2/{BACKEND}")[1]["template"]["containers"][0]
    assert _revision_count(sim) == 2 and mutations(sim) == []
    # The cap is on the product: 24 x 10 = 240 s (the maximum) is accepted.
    svc = services.get_service(name=AUTH)
    _probe(svc, initial_delay_seconds=0)
    op = services.update_service(service=svc)
    advance(sim, 60)
    assert op.result(timeout=30).template.containers[0].startup_probe.failure_threshold == 24


def test_slow_start_fails_with_default_and_short_probes(sim, services):
    """A2: during the outage the backend takes 300 + 420 s to answer; the default startup
    probe gives 240 s, a 3 x 10 probe 30 s."""
    old = [(t.revision, t.percent) for t in services.get_service(name=BACKEND).traffic_statuses]
    op = _deploy_backend(services)
    advance(sim, 250)
    _assert_start_failed(sim, services, op, old, "failed to start and listen on the port")

    op = _deploy_backend(services, probe=True, initial_delay_seconds=0, failure_threshold=3)
    advance(sim, 60)
    _assert_start_failed(sim, services, op, old, "failed the configured startup probe checks")


def test_outage_start_fails_even_with_the_longest_probe(sim, services):
    """(a) Default world: the connector overflows and Cloud SQL refuses connections, so the
    backend needs 720 s; the longest probe Cloud Run allows gives 480 s."""
    assert probe_window_s(MAX_PROBE) == MAX_PROBE_WINDOW_S == 480
    old = [(t.revision, t.percent) for t in services.get_service(name=BACKEND).traffic_statuses]
    op = _deploy_backend(services, probe=True)
    advance(sim, 400)
    assert services.get_service(name=BACKEND).reconciling  # the 480 s window has not run out yet
    advance(sim, 90)
    _assert_start_failed(sim, services, op, old, "failed the configured startup probe checks")
    assert _revision_count(sim) == 3


def test_after_infrastructure_remediation_the_longest_probe_lets_the_backend_start(sim, services):
    """(b) Connector and Cloud SQL remediated: the backend starts in 300 s, inside 480 s."""
    remediate_infrastructure(sim)
    op = _deploy_backend(services, probe=True)
    advance(sim, 200)
    assert services.get_service(name=BACKEND).reconciling  # still starting (300 s)
    advance(sim, 110)
    result = op.result(timeout=30)
    assert result.terminal_condition.state == READY
    assert result.latest_ready_revision == result.latest_created_revision
    assert [(t.revision, t.percent) for t in result.traffic_statuses] == [
        (result.latest_created_revision.rsplit("/", 1)[-1], 100)]
    probe = result.template.containers[0].startup_probe
    assert (probe.initial_delay_seconds, probe.period_seconds, probe.failure_threshold) == (240, 10, 24)


def test_after_infrastructure_remediation_the_default_probe_still_fails(sim, services):
    """(c) Connector and Cloud SQL remediated, no probe: 300 s > the default 240 s."""
    remediate_infrastructure(sim)
    old = [(t.revision, t.percent) for t in services.get_service(name=BACKEND).traffic_statuses]
    op = _deploy_backend(services)
    advance(sim, 250)
    _assert_start_failed(sim, services, op, old, "failed to start and listen on the port")


def test_rollback_by_routing_traffic_creates_no_revision(sim, services):
    """A10: routing traffic back to existing revisions changes only traffic."""
    svc = services.get_service(name=BACKEND)
    created = svc.latest_created_revision
    old = sorted(t.revision for t in svc.traffic_statuses)
    del svc.traffic[:]
    svc.traffic.append(run_v2.TrafficTarget(type_=REVISION, revision=old[0], percent=100))
    op = services.update_service(service=svc)
    advance(sim, 10)
    assert [(t.revision, t.percent) for t in op.result(timeout=30).traffic_statuses] == [(old[0], 100)]
    svc = services.get_service(name=BACKEND)
    del svc.traffic[:]
    svc.traffic.extend([run_v2.TrafficTarget(type_=REVISION, revision=r, percent=50) for r in old])
    op = services.update_service(service=svc)
    advance(sim, 10)
    assert sorted((t.revision, t.percent) for t in op.result(timeout=30).traffic_statuses) == \
        [(old[0], 50), (old[1], 50)]
    assert _revision_count(sim) == 2
    logged = mutations(sim)
    assert len(logged) == 2 and all(m["before"]["template"] == m["after"]["template"] for m in logged)
    assert services.get_service(name=BACKEND).latest_created_revision == created
