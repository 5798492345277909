"""Diagnosis of the load-balancer topology (serverless and instance-group worlds), of
VPC access and startup probes, and the Memorystore reachability check (GCP_FIDELITY A1,
A2, B1, B2)."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.cloud_run import CloudRunActivities
from activities.compute import ComputeActivities
from activities.diagnose import DiagnoseActivities
from activities.memorystore import MemorystoreActivities
from runbook.activity_io import (
    CertificateParams,
    CheckRedisParams,
    DeployRevisionParams,
    DiagnoseParams,
    StartupProbe,
)
from runbook.default_runbook import diagnose_params
from runbook.request import RemediationRequest

from .conftest import Runner
from .world import (
    AUTH_BS,
    BACKEND,
    BS,
    CERT,
    CONNECTOR,
    DOMAINS,
    LB_IP,
    LEGACY_CERT,
    P,
    PROXY,
    R,
    REDIS,
    quick_backend_start,
)

REQ = RemediationRequest()
PARAMS = diagnose_params(REQ)
AUTH = "auth-staging"
NEG = f"projects/{P}/regions/{R}/networkEndpointGroups/netra-backend-staging-neg"
REDIS_CHECK = CheckRedisParams(project=P, region=R, instance=REDIS, connector=CONNECTOR,
                               services=[BACKEND, AUTH])


async def test_diagnose_reads_the_serverless_topology(sim, clients, runner) -> None:
    diag = await runner(DiagnoseActivities(clients).diagnose, PARAMS)
    assert diag.topology_read
    [lb] = diag.load_balancers
    assert (lb.forwarding_rule, lb.ip_address, lb.target_proxy, lb.url_map) == (
        "staging-https-rule", LB_IP, PROXY, "staging-url-map")
    assert lb.certificates == [LEGACY_CERT]
    assert lb.backend_services == [BS, AUTH_BS]
    proxy = diag.https_proxy
    assert proxy is not None and proxy.exists and proxy.certificates == [LEGACY_CERT]
    assert (proxy.url_map, proxy.forwarding_rules, proxy.ip_addresses) == (
        "staging-url-map", ["staging-https-rule"], [LB_IP])
    by_name = {b.name: b for b in diag.backend_services}
    assert list(by_name) == [BS, AUTH_BS]
    backend = by_name[BS]
    assert backend.backend_kind == "SERVERLESS" and backend.cloud_run_services == [BACKEND]
    assert backend.health_checks == [] and backend.groups[0].endswith(NEG)
    assert by_name[AUTH_BS].cloud_run_services == [AUTH]
    # The connector's network, the Redis instance and each service's VPC access.
    assert diag.connector_network == "staging-vpc"
    assert diag.redis is not None and diag.redis.exists
    assert (diag.redis.state, diag.redis.host, diag.redis.port, diag.redis.authorized_network) \
        == ("READY", "10.30.0.4", 6379, "staging-vpc")
    svcs = {s.name: s for s in diag.run_services}
    assert (svcs[BACKEND].vpc_connector, svcs[BACKEND].vpc_egress) == (CONNECTOR,
                                                                      "PRIVATE_RANGES_ONLY")
    assert (svcs[AUTH].vpc_connector, svcs[AUTH].vpc_egress) == (CONNECTOR, "ALL_TRAFFIC")
    assert svcs[BACKEND].startup_probe is None  # Cloud Run's default TCP probe applies
    assert not diag.certificate.exists and diag.certificate.domain_status == {}
    assert sim.mutations() == []  # read-only


async def test_diagnose_reads_the_instance_group_topology(sim, clients, runner) -> None:
    sim.reset("instance-group")
    diag = await runner(DiagnoseActivities(clients).diagnose, PARAMS)
    by_name = {b.name: b for b in diag.backend_services}
    backend = by_name[BS]
    assert backend.backend_kind == "INSTANCE_GROUP" and backend.cloud_run_services == []
    assert backend.health_checks == ["staging-backend-health-check"]
    assert backend.timeout_s == 30
    assert backend.groups[0].endswith(f"regions/{R}/instanceGroups/staging-backend-ig")
    assert by_name[AUTH_BS].health_checks == ["staging-auth-health-check"]
    assert [lb.backend_services for lb in diag.load_balancers] == [[BS, AUTH_BS]]


async def test_diagnose_reports_what_is_missing(sim, clients, runner) -> None:
    params = PARAMS.model_copy(update={"https_proxy": "no-such-proxy",
                                       "redis_instance": "no-such-redis",
                                       "backend_services": [BS, "no-such-backend"]})
    diag = await runner(DiagnoseActivities(clients).diagnose, params)
    assert diag.https_proxy is not None and not diag.https_proxy.exists
    assert diag.https_proxy.forwarding_rules == []
    assert diag.redis is not None and not diag.redis.exists and diag.redis.state == ""
    assert [b.name for b in diag.backend_services] == [BS, AUTH_BS]  # the LB's too
    without = await Runner()(DiagnoseActivities(clients).diagnose, DiagnoseParams(
        **(PARAMS.model_dump() | {"https_proxy": None, "redis_instance": None})))
    assert without.https_proxy is None and without.redis is None
    assert len(without.load_balancers) == 1


async def test_diagnose_reads_back_a_deployed_probe_and_vpc_access(sim, clients,
                                                                   runner) -> None:
    sim.load(quick_backend_start(sim.state()))  # not about start-up times
    probe = StartupProbe(path="/health", initial_delay_s=240, period_s=10, timeout_s=5,
                         failure_threshold=24)
    run = CloudRunActivities(clients)
    await runner(run.deploy_revision, DeployRevisionParams(
        project=P, region=R, service=BACKEND, startup_probe=probe))
    await Runner()(run.deploy_revision, DeployRevisionParams(
        project=P, region=R, service=AUTH, vpc_egress="PRIVATE_RANGES_ONLY",
        startup_probe=StartupProbe(path=None, period_s=5, timeout_s=5, failure_threshold=12)))
    diag = await Runner()(DiagnoseActivities(clients).diagnose, PARAMS)
    svcs = {s.name: s for s in diag.run_services}
    assert svcs[BACKEND].startup_probe == probe.model_copy(update={"port": 8080})
    assert svcs[AUTH].startup_probe == StartupProbe(path=None, port=8080, period_s=5,
                                                    timeout_s=5, failure_threshold=12)
    assert svcs[AUTH].vpc_egress == "PRIVATE_RANGES_ONLY"


async def test_diagnose_sees_a_provisioning_certificate_per_domain(sim, clients) -> None:
    params = CertificateParams(project=P, certificate=CERT, domains=DOMAINS, wait_active_s=0)
    with pytest.raises(ApplicationError) as err:
        await Runner()(ComputeActivities(clients).ensure_certificate, params)
    assert err.value.type == "StepFailed" and "PROVISIONING" in err.value.message
    diag = await Runner()(DiagnoseActivities(clients).diagnose, PARAMS)
    assert diag.certificate.exists and diag.certificate.status == "PROVISIONING"
    assert set(diag.certificate.domain_status) == set(DOMAINS)


async def test_check_redis_passes_on_the_default_world(sim, clients, runner) -> None:
    out = await runner(MemorystoreActivities(clients).check_redis, REDIS_CHECK)
    assert not out.changed
    assert out.data["state"] == "READY" and out.data["connector_network"] == "staging-vpc"
    assert out.data["services"] == {BACKEND: CONNECTOR, AUTH: CONNECTOR}
    assert "READY at 10.30.0.4:6379" in out.detail
    assert sim.mutations() == []


async def test_check_redis_names_each_problem(sim, clients, runner) -> None:
    redis_key = f"projects/{P}/locations/{R}/instances/{REDIS}"
    auth_key = f"projects/{P}/locations/{R}/services/{AUTH}"

    def edit(state: dict) -> None:
        state["redis"][redis_key] |= {"authorizedNetwork": f"projects/{P}/global/networks/other",
                                      "state": "MAINTENANCE"}
        state["run"][auth_key]["template"].pop("vpcAccess")

    sim.edit(edit)
    with pytest.raises(ApplicationError) as err:
        await runner(MemorystoreActivities(clients).check_redis, REDIS_CHECK)
    assert err.value.type == "StepFailed" and err.value.non_retryable
    msg = err.value.message
    assert f"{redis_key} is MAINTENANCE, not READY" in msg
    assert "authorized on network other but connector staging-connector is on staging-vpc" in msg
    assert f"service {AUTH} reaches the VPC through no connector" in msg
    assert BACKEND not in msg
    assert err.value.details[0]["services"] == {BACKEND: CONNECTOR, AUTH: ""}


async def test_check_redis_fails_on_a_missing_instance(sim, clients, runner) -> None:
    with pytest.raises(ApplicationError) as err:
        await runner(MemorystoreActivities(clients).check_redis,
                     REDIS_CHECK.model_copy(update={"instance": "gone",
                                                    "services": [BACKEND, "ghost"]}))
    assert err.value.type == "StepFailed"
    assert "does not exist" in err.value.message and "service ghost does not exist" \
        in err.value.message


async def test_a_missing_https_proxy_fails_the_certificate_step_as_not_found(sim, clients) -> None:
    params = CertificateParams(project=P, certificate=CERT, domains=DOMAINS, wait_active_s=0,
                               target_https_proxy="no-such-proxy")
    with pytest.raises(ApplicationError) as err:
        await Runner()(ComputeActivities(clients).ensure_certificate, params)
    assert err.value.type == "NotFound" and err.value.non_retryable
    assert sim.mutations() == []  # refused before anything was created
