"""Diagnosis and verification, probes before/after the remediation, notifications."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import build_activities
from activities.diagnose import DiagnoseActivities
from activities.verify import VerifyActivities
from activities.notify import NotifyActivities
from activities.probes import ProbeActivities
from activities.settings import Settings
from runbook.activity_io import (
    DiagnoseParams,
    NotificationChannel,
    NotifyParams,
    ProbeParams,
    SampleErrorRateParams,
    VerifyInfrastructureParams,
    WebSocketProbeParams,
)
from runbook.applicability import not_applicable
from runbook.default_runbook import alert_policy_names, build_runbook, diagnose_params
from runbook.request import RemediationRequest

from .conftest import Runner
from .world import BACKEND, CONNECTOR, CONNECTOR_NAME, P, R, SQL, SQL_KEY

REQ = RemediationRequest()
VERIFY = VerifyInfrastructureParams(project=P, region=R, connector=CONNECTOR, sql_instance=SQL,
                                    service=BACKEND)


async def test_diagnose_reads_the_broken_world(sim, clients, runner) -> None:
    t = REQ.targets
    diag = await runner(DiagnoseActivities(clients).diagnose, DiagnoseParams(
        project=t.project, region=t.region, connector=t.connector, sql_instance=t.sql_instance,
        run_services=[t.backend_service, t.auth_service, "no-such-service"],
        health_checks=list(t.health_checks), backend_services=t.backend_services,
        certificate=t.certificate, required_secrets=t.required_secrets,
        alert_policy_names=alert_policy_names(REQ)))
    assert (diag.connector.machine_type, diag.connector.min_instances,
            diag.connector.max_instances, diag.connector.state) == ("e2-micro", 2, 3, "READY")
    assert diag.sql.tier == "db-custom-1-3840" and diag.sql.database_version == "POSTGRES_14"
    # The edition decides which tiers PostgreSQL takes (preflight checks tiers by the
    # documented rule, not tiers.list: GCP_FIDELITY A9).
    assert diag.sql.edition == "ENTERPRISE"
    assert (diag.sql.max_connections_min, diag.sql.max_connections_max) == (14, 262143)
    backend = diag.run_services[0]
    assert [s.name for s in diag.run_services] == [t.backend_service, t.auth_service]
    assert [(x.revision, x.percent) for x in backend.traffic] == [
        ("netra-backend-staging-00001-nty", 50), ("netra-backend-staging-00002-ach", 50)]
    assert backend.env["DATABASE_POOL_SIZE"] == "10" and "DATABASE_URL" not in backend.env
    assert [h.request_path for h in diag.health_checks] == ["/health", "/auth/health"]
    assert [b.timeout_s for b in diag.backend_services] == [30, 30]
    assert not diag.certificate.exists
    assert all(s.latest_state == "ENABLED" for s in diag.secrets)
    assert diag.alert_policies == []
    assert sim.mutations() == []  # read-only


async def test_verify_fails_on_the_broken_world_naming_the_problem(sim, clients, runner) -> None:
    with pytest.raises(ApplicationError) as err:
        await runner(VerifyActivities(clients).verify_infrastructure, VERIFY)
    assert err.value.type == "StepFailed" and err.value.non_retryable
    assert "not one revision at 100%" in err.value.message
    figures = err.value.details[0]
    assert len(figures["service"]["serving"]) == 2
    # Cloud Monitoring (a DISTRIBUTION; its mean): 375 Mbps of private traffic plus the
    # 120 Mbps auth sends to the internet (egress ALL_TRAFFIC) through 3 x e2-micro (300).
    assert figures["connector_utilisation"] == 1.65
    assert f"connector {CONNECTOR_NAME} utilisation is 165% (1.65), not under 70%" \
        in err.value.message
    # No max_connections flag: judged against db-custom-1-3840's default (100).
    assert figures["sql"]["max_connections"] == 100
    assert figures["sql"]["max_connections_source"] == "tier default"
    assert figures["db_connections_in_use"] == 100 and figures["db_connection_use"] == 1.0
    assert (f"Cloud SQL {SQL} uses 100 of 100 connections (the default of db-custom-1-3840) "
            "(100%), not under 75%") in err.value.message


async def test_verify_fails_on_a_right_sized_but_over_utilised_connector(sim, clients,
                                                                          runner) -> None:
    def edit(state: dict) -> None:
        state["vpcaccess"][CONNECTOR_NAME] |= {"machineType": "e2-standard-4", "minInstances": 3,
                                               "maxInstances": 10}
        # With auth's 120 Mbps of internet egress: 12800 Mbps, 80% of 10 x 1600 Mbps.
        state["app"]["model"] = {"egress_demand_mbps": 12680}

    sim.edit(edit)
    wanted = VERIFY.model_copy(update={"connector_machine_type": "e2-standard-4",
                                       "connector_min_instances": 3,
                                       "connector_max_instances": 10})
    with pytest.raises(ApplicationError) as err:
        await runner(VerifyActivities(clients).verify_infrastructure, wanted)
    assert err.value.type == "StepFailed" and err.value.non_retryable
    assert "utilisation is 80% (0.8), not under 70%" in err.value.message
    assert "expected" not in err.value.message  # the size is right
    figures = err.value.details[0]
    assert figures["connector_utilisation"] == 0.8
    assert figures["limits"] == {"connector_utilisation": 0.7, "db_connection_use": 0.75}
    assert figures["measured_at"]["connector"]


async def test_verify_fails_when_database_connections_are_near_max(sim, clients,
                                                                   runner) -> None:
    def edit(state: dict) -> None:
        state["sqladmin"][SQL_KEY]["settings"]["databaseFlags"] = [
            {"name": "max_connections", "value": "160"}]

    sim.edit(edit)
    with pytest.raises(ApplicationError) as err:
        await runner(VerifyActivities(clients).verify_infrastructure, VERIFY)
    # Pools want 142.5 connections: 143 of 160 is 89%.
    assert f"Cloud SQL {SQL} uses 143 of 160 connections (89%), not under 75%" \
        in err.value.message
    assert err.value.details[0]["db_connection_use"] == round(143 / 160, 4)


async def test_verify_does_not_fail_without_data_points(sim, clients, runner) -> None:
    # Nothing routes through the connector: Cloud Monitoring has no points for it.
    sim.edit(lambda state: state["app"].update(routes={}))
    with pytest.raises(ApplicationError) as err:  # the 50/50 split still fails it
        await runner(VerifyActivities(clients).verify_infrastructure, VERIFY)
    figures = err.value.details[0]
    assert figures["connector_utilisation"] == "no data yet"
    assert figures["measured_at"]["connector"] is None
    assert "utilisation" not in err.value.message


async def test_verify_monitoring_outage_is_retryable(sim, clients, runner) -> None:
    sim.fault(api="monitoring", kind="http", status=503, resource="/timeSeries", count=1)
    with pytest.raises(ApplicationError) as err:
        await runner(VerifyActivities(clients).verify_infrastructure, VERIFY)
    assert err.value.type == "Unavailable" and not err.value.non_retryable
    assert "timeSeries" in err.value.message


async def test_verify_names_a_connector_short_of_the_desired_size(sim, clients, runner) -> None:
    wanted = VERIFY.model_copy(update={"connector_machine_type": "e2-standard-4",
                                       "connector_max_instances": 10})
    with pytest.raises(ApplicationError) as err:
        await runner(VerifyActivities(clients).verify_infrastructure, wanted)
    assert "machineType is e2-micro, expected e2-standard-4" in err.value.message
    assert "maxInstances is 3, expected 10" in err.value.message


async def test_probes_see_503s_before_and_none_after_the_remediation(sim, settings) -> None:
    probes = ProbeActivities(settings)
    # The default world: health checks time out and requests get 503.
    sample = await Runner()(probes.sample_error_rate, SampleErrorRateParams(requests=20))
    assert sample.data["errors_503"] > 0 and sample.data["max_latency_ms"] > 5000
    with pytest.raises(ApplicationError) as err:
        await Runner()(probes.probe_health, ProbeParams(path="/health", max_latency_ms=5000))
    assert err.value.type == "StepFailed" and err.value.details[0]["latency_ms"] > 5000

    # Run phases 1-2 of the default runbook with the real activities, skipping the steps
    # the diagnosed topology makes not applicable (as the workflow does).
    acts = {activity._Definition.from_callable(f).name: f for f in build_activities(settings)}
    diag = await Runner()(acts["diagnose"], diagnose_params(REQ))
    for phase in build_runbook(REQ).phases[:2]:
        for step in phase.steps:
            if not_applicable(step, diag) is not None:
                continue
            fn = acts[step.activity]
            arg = activity._Definition.from_callable(fn).arg_types[0].model_validate(step.params)
            await Runner(activity_id=step.id)(fn, arg)

    for path, limit in (("/health", 5000), ("/auth/health", 5000), ("/health/database", 2000)):
        out = await Runner()(probes.probe_health, ProbeParams(path=path, max_latency_ms=limit))
        assert out.data["status"] == 200 and out.data["latency_ms"] <= limit
    ws = await Runner()(probes.probe_websocket, WebSocketProbeParams())
    assert ws.data["reply_type"] == "auth_ok"
    sample = await Runner()(probes.sample_error_rate, SampleErrorRateParams(requests=40))
    assert sample.data == {"requests": 40, "errors_503": 0, "errors_other": 0,
                           "max_latency_ms": sample.data["max_latency_ms"]}
    verified = await Runner()(acts["verify_infrastructure"], VERIFY)
    assert "serves 100%" in verified.detail
    # RUNBOOK phase 1 criteria, measured through Cloud Monitoring.
    assert 0 < verified.data["connector_utilisation"] < 0.7
    # The runbook leaves max_connections unset (GCP_FIDELITY A8): the tier's default counts.
    assert verified.data["sql"]["max_connections"] == 400
    assert verified.data["sql"]["max_connections_source"] == "tier default"
    assert 0 < verified.data["db_connection_use"] < 0.75
    assert "utilisation 2%" in verified.detail and "connection use" in verified.detail


async def test_websocket_probe_fails_on_injected_503(sim, settings) -> None:
    sim.fault(api="app", kind="app_503", resource="/ws", count=5)
    with pytest.raises(ApplicationError) as err:
        await Runner()(ProbeActivities(settings).probe_websocket, WebSocketProbeParams())
    assert err.value.type == "StepFailed" and "auth_ok" in err.value.message


async def test_unreachable_application_is_a_retryable_transport_error(settings) -> None:
    dead = Settings(backend="gcp", app_url="http://127.0.0.1:9", poll_interval_s=0.1)
    with pytest.raises(ApplicationError) as err:
        await Runner()(ProbeActivities(dead).probe_health,
                       ProbeParams(path="/health", max_latency_ms=1000))
    assert err.value.type == "Transport" and not err.value.non_retryable


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


async def test_notify_reports_a_dead_webhook_instead_of_raising() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        good = f"http://127.0.0.1:{server.server_port}/hooks/secret-token"
        out = await Runner()(NotifyActivities().notify, NotifyParams(
            run_id="r1", incident_id="1278", level="escalation", recipient="Platform Director",
            subject="phase 1 over budget", body="escalating",
            channels=[NotificationChannel(kind="log"),
                      NotificationChannel(kind="webhook", url=good),
                      NotificationChannel(kind="webhook", url="http://127.0.0.1:9/dead")]))
    finally:
        server.shutdown()
    assert out.delivered == ["log", f"webhook:http://127.0.0.1:{server.server_port}"]
    assert len(out.failed) == 1 and out.failed[0].startswith("webhook:http://127.0.0.1:9")
    assert "secret-token" not in json.dumps(out.model_dump())
    assert _Hook.received[-1]["subject"] == "phase 1 over budget"
