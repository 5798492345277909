"""The request and the plan against Google's documented limits (pure functions)."""

from __future__ import annotations

import pytest

from runbook.activity_io import (
    BackendServiceState,
    CertificateState,
    ConnectorState,
    Diagnosis,
    HealthCheckState,
    HttpsProxyState,
    RedisState,
    RunServiceState,
    SqlInstanceState,
    TrafficSplit,
)
from runbook.default_runbook import build_runbook
from runbook.plan import build_plan
from runbook.request import RemediationRequest, request_problems

HEALTH_CHECK_OF = {"staging-backend-service": "staging-backend-health-check",
                   "staging-auth-service": "staging-auth-health-check"}


def diagnosis(kind: str = "SERVERLESS", *, topology: bool = True, proxy: bool = True,
              tier: str = "db-custom-1-3840", flags: dict | None = None,
              edition: str = "ENTERPRISE") -> Diagnosis:
    services = [RunServiceState(name=n, ready=True, latest_ready_revision=f"{n}-00001-aaa",
                                latest_created_revision=f"{n}-00001-aaa",
                                revisions=[f"{n}-00001-aaa"],
                                traffic=[TrafficSplit(revision="LATEST", percent=100)],
                                vpc_connector="staging-connector", vpc_egress="PRIVATE_RANGES_ONLY")
                for n in ("netra-backend-staging", "auth-staging")]
    backends = [BackendServiceState(name=b, timeout_s=30, backend_kind=kind if topology else "UNKNOWN",
                                    health_checks=[] if kind == "SERVERLESS" else [hc])
                for b, hc in HEALTH_CHECK_OF.items()]
    return Diagnosis(
        connector=ConnectorState(name="staging-connector", state="READY", machine_type="e2-micro",
                                 min_instances=2, max_instances=3),
        sql=SqlInstanceState(name="netra-staging-db", state="RUNNABLE", database_version="POSTGRES_14",
                             tier=tier, flags=flags or {}, edition=edition,
                             max_connections_min=14, max_connections_max=262143),
        run_services=services,
        health_checks=[HealthCheckState(name=hc, check_interval_s=5, timeout_s=5, healthy_threshold=2,
                                        unhealthy_threshold=2) for hc in HEALTH_CHECK_OF.values()],
        backend_services=backends,
        certificate=CertificateState(name="staging-netrasystems-ai-cert", exists=False),
        secrets=[], topology_read=topology, connector_network="staging-vpc",
        https_proxy=HttpsProxyState(name="staging-https-proxy", exists=proxy,
                                    certificates=["staging-legacy-cert"] if proxy else []),
        redis=RedisState(name="staging-redis", exists=True, state="READY",
                         authorized_network="staging-vpc"),
    )


def plan_for(request: dict, diag: Diagnosis):
    req = RemediationRequest.model_validate(request)
    return build_plan(req, build_runbook(req), diag)


def problem_fields(raw: dict) -> dict[str, str]:
    _, problems = request_problems(raw)
    return {p.field: p.reason for p in problems}


def test_a_startup_probe_beyond_cloud_runs_cap_is_refused_naming_the_field():
    problems = problem_fields({"desired": {"startup_probe": {"failure_threshold": 90}}})
    assert "Cloud Run allows at most 240s" in problems["desired.startup_probe"]
    assert "480s" in problems["desired.startup_probe"]
    assert problem_fields({"desired": {"startup_probe": {"initial_delay_s": 300}}}) \
        .keys() == {"desired.startup_probe.initial_delay_s"}


def test_an_impossible_cpu_memory_pair_is_refused_with_cloud_runs_table():
    reason = problem_fields({"desired": {"backend_cpu": "1", "backend_memory": "6Gi"}})[
        "desired.backend_memory"]
    assert "for 1 CPU, Cloud Run needs memory between 512Mi and 4Gi" in reason
    assert "4096Mi and 32Gi" in problem_fields(
        {"desired": {"backend_cpu": "8", "backend_memory": "2Gi"}})["desired.backend_memory"]
    assert "above Cloud Run's maximum memory of 32Gi" in problem_fields(
        {"desired": {"backend_memory": "64Gi"}})["desired.backend_memory"]
    assert problem_fields({"desired": {"backend_cpu": "4", "backend_memory": "1Gi"}})
    assert problem_fields({"desired": {"backend_cpu": "2", "backend_memory": "8Gi"}}) == {}


def test_serverless_backends_make_load_balancer_steps_not_applicable():
    plan = plan_for({}, diagnosis("SERVERLESS"))
    assert sorted(n.step_id for n in plan.not_applicable) == [
        "backend-timeout-staging-auth-service", "backend-timeout-staging-backend-service",
        "health-check-staging-auth-health-check", "health-check-staging-backend-health-check"]
    assert not plan.problems
    assert not any(c.step_id.startswith(("health-check-", "backend-timeout-")) for c in plan.changes)


def test_instance_group_backends_keep_the_load_balancer_steps():
    plan = plan_for({}, diagnosis("INSTANCE_GROUP"))
    assert plan.not_applicable == []
    fields = {(c.step_id, c.field): c.desired for c in plan.changes}
    assert fields[("backend-timeout-staging-backend-service", "timeoutSec")] == 600
    assert fields[("health-check-staging-backend-health-check", "checkIntervalSec")] == 30


def test_a_diagnosis_without_topology_changes_nothing_about_applicability():
    # Histories recorded before the topology was read plan as they did then.
    plan = plan_for({}, diagnosis("SERVERLESS", topology=False))
    assert plan.not_applicable == [] and not plan.problems


def test_a_backend_timeout_asked_of_serverless_negs_is_a_preflight_problem():
    plan = plan_for({"desired": {"backend_service_timeout_s": 600}}, diagnosis("SERVERLESS"))
    [problem] = plan.problems
    assert problem.field == "desired.backend_service_timeout_s"
    assert "Timeout sec is not supported for a backend service with Serverless network endpoint " \
           "groups" in problem.reason
    assert plan_for({"desired": {"backend_service_timeout_s": 600}},
                    diagnosis("INSTANCE_GROUP")).problems == []


def test_max_connections_below_the_new_tiers_default_is_warned_about():
    warned = plan_for({"desired": {"sql_max_connections": 300}}, diagnosis())
    assert any("LOWER than the default of tier db-custom-2-7680 (400)" in w for w in warned.warnings)
    default = plan_for({}, diagnosis())
    assert not any("LOWER" in w for w in default.warnings)
    # The flag is left alone by default, so the plan changes only the tier...
    assert [c.field for c in default.changes if c.step_id == "expand-sql"] == ["settings.tier"]
    # ...and a flag already set below the new default is called out.
    kept = plan_for({}, diagnosis(flags={"max_connections": "100"}))
    assert any("max_connections=100 set, below the default" in w for w in kept.warnings)


def test_postgres_tiers_follow_the_documented_rule_not_a_tier_list():
    assert plan_for({"desired": {"sql_tier": "db-custom-2-8192"}}, diagnosis()).problems == []
    plan = plan_for({"desired": {"sql_tier": "db-perf-optimized-N-2"}}, diagnosis(edition="ENTERPRISE"))
    assert [p.field for p in plan.problems] == ["desired.sql_tier"]
    assert "ENTERPRISE_PLUS" in plan.problems[0].reason


def test_a_missing_backend_service_is_a_preflight_problem_not_a_skip():
    diag = diagnosis("SERVERLESS")
    diag.backend_services = diag.backend_services[:1]
    plan = plan_for({}, diag)
    assert [p.field for p in plan.problems] == ["targets.backend_services"]
    assert "staging-auth-service" in plan.problems[0].reason
    assert "backend-timeout-staging-auth-service" not in {n.step_id for n in plan.not_applicable}


def test_the_certificate_is_attached_beside_the_proxys_certificates():
    plan = plan_for({}, diagnosis())
    attach = next(c for c in plan.changes if c.field == "sslCertificates")
    assert (attach.resource, attach.current, attach.desired) == (
        "staging-https-proxy", ["staging-legacy-cert"],
        ["staging-legacy-cert", "staging-netrasystems-ai-cert"])
    missing = plan_for({}, diagnosis(proxy=False))
    assert [p.field for p in missing.problems] == ["targets.https_proxy"]


def test_alert_policies_use_metrics_that_exist_and_say_so():
    plan = plan_for({}, diagnosis())
    created = [c.resource for c in plan.changes if c.field == "alertPolicy"]
    assert "[1278] netra-staging-db connections > 80% of max_connections (320)" in created
    assert not any("connection time" in name.lower() for name in created)
    assert any("no connection-time metric" in w for w in plan.warnings)
    assert any("no Cloud Run startup probe tolerates more than 480 s" in w for w in plan.warnings)


@pytest.mark.parametrize("kind", ["SERVERLESS", "INSTANCE_GROUP"])
def test_the_plan_digest_covers_what_is_not_applicable(kind):
    a = plan_for({}, diagnosis(kind))
    b = plan_for({}, diagnosis(kind))
    assert a.digest == b.digest
    assert (a.digest == plan_for({}, diagnosis("SERVERLESS")).digest) == (kind == "SERVERLESS")
