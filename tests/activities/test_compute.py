"""Compute: health checks, backend service timeout (fingerprint), managed certificate
(created, attached to the HTTPS proxy beside the legacy one, ACTIVE; undone in order)."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.compute import ComputeActivities
from runbook.activity_io import (
    BackendServiceTimeoutParams,
    CertificateParams,
    HealthCheckParams,
    StepOutcome,
)

from .conftest import Runner
from .world import (
    BS,
    BS_KEY,
    CERT,
    CERT_KEY,
    DOMAINS,
    HC,
    HC_KEY,
    LB_IP,
    LEGACY_CERT,
    P,
    PROXY,
    cert_names,
    compensation,
    resource,
)

HC_PARAMS = HealthCheckParams(project=P, health_check=HC, check_interval_s=30, timeout_s=30,
                              healthy_threshold=2, unhealthy_threshold=5)
BS_PARAMS = BackendServiceTimeoutParams(project=P, backend_service=BS, timeout_s=600)
CERT_PARAMS = CertificateParams(project=P, certificate=CERT, domains=DOMAINS, wait_active_s=60,
                                target_https_proxy=PROXY)
HC_FIELDS = ("checkIntervalSec", "timeoutSec", "healthyThreshold", "unhealthyThreshold")


def hc_state(state) -> dict:
    hc = resource(state, "compute", HC_KEY)
    return {k: hc[k] for k in HC_FIELDS}


async def test_health_check_configure_repeat_and_restore(sim, clients, runner) -> None:
    acts = ComputeActivities(clients)
    original = hc_state(sim.state())
    out = await runner(acts.configure_health_check, HC_PARAMS)
    assert out.changed and out.resource == f"projects/{P}/global/healthChecks/{HC}"
    assert out.before == original == {"checkIntervalSec": 5, "timeoutSec": 5,
                                      "healthyThreshold": 2, "unhealthyThreshold": 2}
    assert out.after == {"checkIntervalSec": 30, "timeoutSec": 30, "healthyThreshold": 2,
                         "unhealthyThreshold": 5}
    assert not (await Runner()(acts.configure_health_check, HC_PARAMS)).changed
    patches = sim.mutations(api="compute", method="PATCH", resource=HC)
    assert len(patches) == 1 and patches[0]["request_id"]

    undo = compensation("hc", HC_PARAMS, out)
    restored = await Runner(activity_id="undo")(acts.restore_health_check, undo)
    # Shrinking the interval back below the current timeout works: timeoutSec goes first.
    assert restored.changed and hc_state(sim.state()) == original
    assert not (await Runner(activity_id="undo")(acts.restore_health_check, undo)).changed


async def test_health_check_timeout_above_interval_is_refused(sim, clients, runner) -> None:
    acts = ComputeActivities(clients)
    bad = HC_PARAMS.model_copy(update={"timeout_s": 90})
    with pytest.raises(ApplicationError) as err:
        await runner(acts.configure_health_check, bad)
    assert err.value.type == "InvalidArgument" and err.value.non_retryable
    assert "timeoutSec" in err.value.message
    assert sim.mutations(api="compute") == []


async def test_backend_service_timeout_rereads_a_stale_fingerprint(sim, clients, runner) -> None:
    # Only a backend service on instance groups has a settable timeout (GCP_FIDELITY A1).
    sim.reset("instance-group")
    acts = ComputeActivities(clients)
    # The first PATCH is answered 412 conditionNotMet (someone changed it meanwhile).
    sim.fault(api="compute", kind="http", method="PATCH", resource=BS, status=412,
              reason="conditionNotMet")
    # Attempt 1 ends with the retryable StaleFingerprint; Temporal's next attempt resumes
    # from its checkpoint, reads the fresh fingerprint and succeeds.
    with pytest.raises(ApplicationError) as stale:
        await runner(acts.set_backend_service_timeout, BS_PARAMS)
    assert stale.value.type == "StaleFingerprint" and not stale.value.non_retryable
    retry = Runner(attempt=2, heartbeat_details=[runner.last_checkpoint()])
    out = await retry(acts.set_backend_service_timeout, BS_PARAMS)
    assert out.changed and out.before == {"timeoutSec": 30} and out.after == {"timeoutSec": 600}
    assert [f["fired"] for f in sim.faults()] == [1]
    assert resource(sim.state(), "compute", BS_KEY)["timeoutSec"] == 600
    assert not (await Runner()(acts.set_backend_service_timeout, BS_PARAMS)).changed

    undo = compensation("bs", BS_PARAMS, out)
    assert (await Runner(activity_id="undo")(acts.restore_backend_service, undo)).changed
    assert resource(sim.state(), "compute", BS_KEY)["timeoutSec"] == 30
    assert not (await Runner(activity_id="undo")(acts.restore_backend_service, undo)).changed
    assert len(sim.mutations(api="compute", method="PATCH", resource=BS)) == 2


async def test_persistent_412_is_a_retryable_stale_fingerprint(sim, clients, runner) -> None:
    sim.reset("instance-group")
    acts = ComputeActivities(clients)
    sim.fault(api="compute", kind="http", method="PATCH", resource=BS, status=412, count=10)
    with pytest.raises(ApplicationError) as err:
        await runner(acts.set_backend_service_timeout, BS_PARAMS)
    assert err.value.type == "StaleFingerprint" and not err.value.non_retryable
    # The PATCH was refused, so nothing changed: no checkpoint for the run to report or
    # undo, and the last heartbeat clears it so the next attempt starts clean.
    assert not any(isinstance(d, dict) and "before" in d for d in err.value.details)
    assert runner.heartbeats[-1] == ()
    assert sim.mutations(api="compute") == []


async def test_compute_operation_resume_uses_the_same_operation(sim, clients) -> None:
    acts = ComputeActivities(clients)
    sim.fault(api="compute", kind="operation_hang", method="PATCH", resource=HC)
    first = Runner()
    err = await first.run_until_operation(acts.configure_health_check, HC_PARAMS)
    assert isinstance(err, ApplicationError) and err.type == "Cancelled"
    checkpoint = first.last_checkpoint()
    assert checkpoint["operation"]
    second = Runner(attempt=2, heartbeat_details=[checkpoint])
    err2 = await second.run_until_operation(acts.configure_health_check, HC_PARAMS, timeout=1)
    assert err2.details[0]["operation"] == checkpoint["operation"]
    assert sim.mutations(api="compute") == []


async def test_retry_after_a_failed_compute_operation_sends_a_fresh_request_id(
        sim, clients) -> None:
    """A transient operation error: the retry must not reuse the request id, or compute
    hands back the same failed operation and the step can never succeed."""
    acts = ComputeActivities(clients)
    sim.fault(api="compute", kind="operation_error", method="PATCH", resource=HC, code=14,
              message="backend unavailable")
    first = Runner()
    with pytest.raises(ApplicationError) as err:
        await first(acts.configure_health_check, HC_PARAMS)
    assert err.value.type == "OperationFailed" and not err.value.non_retryable
    checkpoint = first.last_checkpoint()
    assert checkpoint["failed_operations"] == [checkpoint["operation"]]
    out = await Runner(attempt=2, heartbeat_details=[checkpoint])(
        acts.configure_health_check, HC_PARAMS)
    assert out.changed and out.before == checkpoint["before"]
    patches = sim.mutations(api="compute", method="PATCH", resource=HC)
    assert len(patches) == 1  # the failed operation applied nothing; the retry applied once
    assert hc_state(sim.state())["checkIntervalSec"] == 30


async def test_serverless_backend_timeout_is_refused_non_retryable(sim, clients, runner) -> None:
    # The default world: Cloud Run behind a serverless NEG, whose timeout is fixed.
    with pytest.raises(ApplicationError) as err:
        await runner(ComputeActivities(clients).set_backend_service_timeout, BS_PARAMS)
    assert err.value.type == "InvalidArgument" and err.value.non_retryable
    assert "Serverless network endpoint groups" in err.value.message
    # Refused: no checkpoint, so the run neither reports nor undoes a change never made.
    assert not any(isinstance(d, dict) and "before" in d for d in err.value.details)
    assert sim.mutations(api="compute") == []


async def test_certificate_attached_beside_the_legacy_one_and_undone(sim, clients,
                                                                    runner) -> None:
    acts = ComputeActivities(clients)
    assert cert_names(sim.state()) == [LEGACY_CERT]
    out = await runner(acts.ensure_certificate, CERT_PARAMS)
    legacy_link = out.before["proxy_certificates"][0]
    assert legacy_link.endswith(f"/global/sslCertificates/{LEGACY_CERT}")
    assert out.changed and out.before == {"exists": False, "target_https_proxy": PROXY,
                                          "proxy_certificates": [legacy_link]}
    assert out.data == {"created": True, "attached": True}
    assert out.after["status"] == "ACTIVE" and sorted(out.after["domains"]) == sorted(DOMAINS)
    assert out.after["domain_status"] == {d: "ACTIVE" for d in DOMAINS}
    assert [x.rsplit("/", 1)[-1] for x in out.after["proxy_certificates"]] == [LEGACY_CERT, CERT]
    # The legacy certificate keeps serving beside the new one.
    assert cert_names(sim.state()) == [LEGACY_CERT, CERT]
    # Provisioning took several polls, each one a heartbeat.
    assert len(runner.heartbeats) > 3
    attach = sim.mutations(api="compute", method="POST", resource=PROXY)
    assert len(attach) == 1 and attach[0]["request_id"]

    again = await Runner()(acts.ensure_certificate, CERT_PARAMS)
    assert not again.changed and again.before["exists"]
    assert again.data == {"created": False, "attached": False}
    assert len(sim.mutations(api="compute", method="POST", resource=CERT)) == 1
    assert len(sim.mutations(api="compute", method="POST", resource=PROXY)) == 1

    # The undo of the repeat (which found it existing and attached) keeps everything; the
    # creator's detaches it from the proxy first, then deletes it.
    keep = await Runner()(acts.delete_certificate, compensation("cert", CERT_PARAMS, again))
    assert not keep.changed and resource(sim.state(), "compute", CERT_KEY) is not None
    gone = await Runner(activity_id="undo")(acts.delete_certificate,
                                            compensation("cert", CERT_PARAMS, out))
    assert gone.changed and gone.after == {"exists": False, "target_https_proxy": PROXY,
                                           "proxy_certificates": [legacy_link]}
    assert "detached from" in gone.detail and "deleted" in gone.detail
    assert resource(sim.state(), "compute", CERT_KEY) is None
    assert cert_names(sim.state()) == [LEGACY_CERT]
    assert not (await Runner(activity_id="undo")(
        acts.delete_certificate, compensation("cert", CERT_PARAMS, out))).changed


async def test_certificate_on_a_domain_not_pointing_at_the_lb_names_the_domain(
        sim, clients, runner) -> None:
    acts = ComputeActivities(clients)
    params = CERT_PARAMS.model_copy(update={
        "domains": ["staging.netrasystems.ai", "elsewhere.example.com"], "wait_active_s": 1})
    with pytest.raises(ApplicationError) as err:
        await runner(acts.ensure_certificate, params)
    assert err.value.type == "StepFailed" and err.value.non_retryable
    assert "still PROVISIONING" in err.value.message
    assert (f"elsewhere.example.com: FAILED_NOT_VISIBLE (DNS does not point at the load "
            f"balancer's IP {LB_IP})") in err.value.message
    # It was created and attached: the checkpoint lets the workflow's undo take both back.
    before = err.value.details[0]["before"]
    assert before["exists"] is False and len(before["proxy_certificates"]) == 1
    assert cert_names(sim.state()) == [LEGACY_CERT, CERT]
    undo = await Runner(activity_id="undo")(acts.delete_certificate, compensation(
        "cert", params, StepOutcome(changed=True, resource=CERT_KEY, before=before)))
    assert undo.changed and cert_names(sim.state()) == [LEGACY_CERT]
    assert resource(sim.state(), "compute", CERT_KEY) is None


async def test_certificate_attached_to_no_proxy_stays_provisioning(sim, clients, runner) -> None:
    acts = ComputeActivities(clients)
    with pytest.raises(ApplicationError) as err:
        await runner(acts.ensure_certificate, CERT_PARAMS.model_copy(
            update={"wait_active_s": 0, "target_https_proxy": None}))
    assert err.value.type == "StepFailed" and err.value.non_retryable
    assert "PROVISIONING" in err.value.message and "attached to no proxy" in err.value.message
    # It was created, so the checkpoint lets the workflow's undo delete it.
    assert err.value.details[0]["before"] == {"exists": False}
