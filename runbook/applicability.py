"""Which load-balancer steps Google Cloud lets do anything, from the diagnosed topology.

An external HTTPS load balancer reaches Cloud Run only through a serverless NEG, and a
backend service of serverless NEGs supports neither health checks nor ``timeoutSec``
(Google answers 400 "Timeout sec is not supported for a backend service with Serverless
network endpoint groups"; the timeout is fixed at 60 minutes): GCP_FIDELITY A1, from the
Load Balancing docs "Serverless network endpoint groups overview". Such steps are shown
as not applicable with the reason and are not attempted; readiness of a Cloud Run
revision is decided by its startup probe instead (A2).

A diagnosis that did not read the topology (recorded before it was read) marks nothing
as not applicable, which is what those runs did.
"""

from __future__ import annotations

from pydantic import BaseModel

from runbook import activity_names as act
from runbook.activity_io import Diagnosis
from runbook.definition import StepSpec

SERVERLESS_TIMEOUT = (
    "backend service {bs} is served by serverless NEGs ({services}): Google refuses "
    "timeoutSec there ('Timeout sec is not supported for a backend service with Serverless "
    "network endpoint groups'); its timeout is fixed at 60 minutes. Cloud Run's own request "
    "timeout (configure-backend) bounds requests instead")
UNATTACHED_HEALTH_CHECK = (
    "health check {hc} is attached to no backend service of the load balancer: the backends "
    "are serverless NEGs, which do not support health checks, so changing it has no effect "
    "on traffic. The Cloud Run startup probe (deploy-incident-env) decides readiness instead")


class NotApplicable(BaseModel):
    step_id: str
    resource: str
    reason: str
    source: str = "GCP_FIDELITY A1: Load Balancing docs, serverless NEG limitations"


def not_applicable(step: StepSpec, diag: Diagnosis) -> NotApplicable | None:
    if not diag.topology_read:
        return None
    p = step.params
    if step.activity == act.SET_BACKEND_SERVICE_TIMEOUT:
        # A target backend service that is missing is a preflight problem, not a skip.
        bs = next((b for b in diag.backend_services if b.name == p["backend_service"]), None)
        if bs is not None and bs.backend_kind == "SERVERLESS":
            return NotApplicable(step_id=step.id, resource=bs.name, reason=SERVERLESS_TIMEOUT.format(
                bs=bs.name, services=", ".join(bs.cloud_run_services) or "Cloud Run"))
    if step.activity == act.CONFIGURE_HEALTH_CHECK:
        hc = p["health_check"]
        attached = any(hc in b.health_checks for b in diag.backend_services)
        if not attached and any(b.backend_kind == "SERVERLESS" for b in diag.backend_services):
            return NotApplicable(step_id=step.id, resource=hc,
                                 reason=UNATTACHED_HEALTH_CHECK.format(hc=hc))
    return None


def serverless_backends(diag: Diagnosis) -> list[str]:
    return [b.name for b in diag.backend_services if b.backend_kind == "SERVERLESS"]
