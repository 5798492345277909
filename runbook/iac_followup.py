"""What an engineer must change in Terraform so the next ``terraform apply`` keeps a fix.

The seeds' infrastructure lives in Terraform (seed 000 names ``vpc-connector.tf``); a change
made through the API and left in force is drift, and the next apply reverts it. The report
lists, for each change still in force, the Terraform resource type, the Google resource
and the attributes to update (GCP_FIDELITY section C). Resource types and attribute names
are those of the hashicorp/google provider.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from runbook import activity_names as act


class IacFollowUp(BaseModel):
    step_id: str
    terraform_resource: str  # provider resource type
    resource: str  # the Google resource it manages (its name)
    attributes: list[str]
    note: str = ""


_CONNECTOR_NOTE = (
    "set these to the new values before the next apply: in Terraform, lowering min/max "
    "instances (or changing the machine type back) destroys and recreates the connector, "
    "an outage for every service behind it")
_NEW_RESOURCE = "created by the run: add it to Terraform (terraform import) or it stays unmanaged"


def _deploy_attributes(params: dict[str, Any]) -> list[str]:
    attrs = []
    if params.get("env"):
        attrs += [f"template.containers.env[{k}]" for k in sorted(params["env"])]
    if params.get("cpu") is not None or params.get("memory") is not None:
        attrs.append("template.containers.resources.limits")
    if params.get("min_instances") is not None or params.get("max_instances") is not None:
        attrs.append("template.scaling")
    if params.get("timeout_s") is not None:
        attrs.append("template.timeout")
    if params.get("startup_probe") is not None:
        attrs.append("template.containers.startup_probe")
    if params.get("vpc_connector") is not None or params.get("vpc_egress") is not None:
        attrs.append("template.vpc_access (connector, egress)")
    return attrs


def follow_up(step_id: str, activity: str, params: dict[str, Any]) -> list[IacFollowUp]:
    """The Terraform edits that keep the change of one step, or [] when none applies."""
    p = params
    if activity == act.SCALE_CONNECTOR:
        return [IacFollowUp(step_id=step_id, terraform_resource="google_vpc_access_connector",
                            resource=p["connector"],
                            attributes=["machine_type", "min_instances", "max_instances"],
                            note=_CONNECTOR_NOTE)]
    if activity == act.EXPAND_SQL:
        attrs = ["settings.tier"] + [f"settings.database_flags[{f}]" for f in sorted(p["flags"])]
        return [IacFollowUp(step_id=step_id, terraform_resource="google_sql_database_instance",
                            resource=p["instance"], attributes=attrs,
                            note="database_flags replaces the whole list: keep the other flags")]
    if activity == act.DEPLOY_REVISION:
        return [IacFollowUp(step_id=step_id, terraform_resource="google_cloud_run_v2_service",
                            resource=p["service"], attributes=_deploy_attributes(p))]
    if activity == act.ROUTE_TRAFFIC_TO_LATEST:
        return [IacFollowUp(step_id=step_id, terraform_resource="google_cloud_run_v2_service",
                            resource=p["service"], attributes=["traffic (100% to the latest revision)"])]
    if activity == act.CONFIGURE_HEALTH_CHECK:
        return [IacFollowUp(step_id=step_id, terraform_resource="google_compute_health_check",
                            resource=p["health_check"],
                            attributes=["check_interval_sec", "timeout_sec", "healthy_threshold",
                                        "unhealthy_threshold"])]
    if activity == act.SET_BACKEND_SERVICE_TIMEOUT:
        return [IacFollowUp(step_id=step_id, terraform_resource="google_compute_backend_service",
                            resource=p["backend_service"], attributes=["timeout_sec"])]
    if activity == act.ENSURE_ALERT_POLICY:
        return [IacFollowUp(step_id=step_id, terraform_resource="google_monitoring_alert_policy",
                            resource=p["display_name"], attributes=["(whole resource)"],
                            note=_NEW_RESOURCE)]
    if activity == act.ENSURE_CERTIFICATE:
        out = [IacFollowUp(step_id=step_id, terraform_resource="google_compute_managed_ssl_certificate",
                           resource=p["certificate"], attributes=["managed.domains"],
                           note=_NEW_RESOURCE)]
        if p.get("target_https_proxy"):
            out.append(IacFollowUp(
                step_id=step_id, terraform_resource="google_compute_target_https_proxy",
                resource=p["target_https_proxy"], attributes=["ssl_certificates"],
                note="add the certificate beside the ones listed, or the next apply detaches it"))
        return out
    return []  # revisions (cleanup) are not Terraform resources
