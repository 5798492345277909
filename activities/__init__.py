"""Activities of the remediation runbook, one module per Google service.

The worker imports only ``build_activities``; every class gets its clients injected.
"""

from __future__ import annotations

from typing import Any, Callable

from activities.clients import GcpClients
from activities.cloud_run import CloudRunActivities
from activities.cloud_sql import CloudSqlActivities
from activities.compute import ComputeActivities
from activities.diagnose import DiagnoseActivities
from activities.memorystore import MemorystoreActivities
from activities.monitoring import MonitoringActivities
from activities.notify import NotifyActivities
from activities.notify_channel import ChannelNotifyActivities
from activities.notify_channels import NotifyChannels
from activities.probes import ProbeActivities
from activities.secret_manager import SecretManagerActivities
from activities.settings import Settings
from activities.verify import VerifyActivities
from activities.vpc_access import VpcAccessActivities


def build_activities(settings: Settings | None = None,
                     clients: GcpClients | None = None) -> list[Callable[..., Any]]:
    """Every activity callable, for ``Worker(activities=...)``."""
    settings = settings or Settings.from_env()
    clients = clients or GcpClients(settings)
    diag = DiagnoseActivities(clients)
    verify = VerifyActivities(clients)
    redis = MemorystoreActivities(clients)
    run = CloudRunActivities(clients)
    sql = CloudSqlActivities(clients)
    vpc = VpcAccessActivities(clients)
    compute = ComputeActivities(clients)
    secrets = SecretManagerActivities(clients)
    monitoring = MonitoringActivities(clients)
    probes = ProbeActivities(settings)
    notify = NotifyActivities()
    # Read at worker start: a bad channels file stops the worker with its message.
    channel_notify = ChannelNotifyActivities(NotifyChannels.from_env(), clients)
    return [
        diag.diagnose, verify.verify_infrastructure, redis.check_redis, notify.notify,
        channel_notify.notify_channel,
        vpc.scale_connector,
        sql.expand_sql, sql.restore_sql,
        run.deploy_revision, run.route_traffic_to_latest, run.restore_service,
        run.delete_old_revisions,
        compute.configure_health_check, compute.restore_health_check,
        compute.set_backend_service_timeout, compute.restore_backend_service,
        compute.ensure_certificate, compute.delete_certificate,
        secrets.check_secrets,
        monitoring.ensure_alert_policy, monitoring.delete_alert_policy,
        probes.probe_health, probes.probe_websocket, probes.sample_error_rate,
    ]


__all__ = ["GcpClients", "Settings", "build_activities"]
