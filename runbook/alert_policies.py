"""Phase 3's alert policies, on metrics that exist and with aligners that fit them.

Cloud Monitoring refuses an aligner that does not fit a metric's kind and value type
(GCP_FIDELITY A4) and a policy on a metric type that does not exist (A5), so each policy
names a built-in metric and the aligner its kind calls for:
- ``run.googleapis.com/request_count`` is DELTA INT64: ALIGN_RATE;
- ``vpcaccess.googleapis.com/connector/cpu/utilizations`` is a GAUGE DISTRIBUTION:
  ALIGN_PERCENTILE_99 (ALIGN_MEAN is refused with 400);
- ``cloudsql.googleapis.com/database/postgresql/num_backends`` is GAUGE INT64: ALIGN_MEAN.

The seeds' "DB connection time > 60 s / 90 s" has no Cloud SQL metric: connection time
would be a custom metric the application does not write, and a policy on it is refused.
The runbook alerts on its cause instead, connection use against ``max_connections``.
"""

from __future__ import annotations

from runbook.activity_io import AlertPolicyParams
from runbook.cloud_sql_limits import default_max_connections
from runbook.request import RemediationRequest

DB_CONNECTION_TIME_NOTE = (
    "The seeds' 'DB connection time > 60s/90s' alerts are replaced: Cloud SQL has no "
    "connection-time metric and a policy on a custom metric nothing writes is refused "
    "(404). Alerting on connections in use (cloudsql.googleapis.com/database/postgresql/"
    "num_backends) at 80% and 90% of max_connections instead.")


def effective_max_connections(req: RemediationRequest) -> int | None:
    """max_connections after phase 1: the requested value, else the new tier's default."""
    d = req.desired
    return d.sql_max_connections or default_max_connections(d.sql_tier)


def alert_policies(req: RemediationRequest) -> list[AlertPolicyParams]:
    t = req.targets
    p = t.project
    run_requests = ('metric.type="run.googleapis.com/request_count" AND '
                    f'resource.type="cloud_run_revision" AND resource.label.service_name="{t.backend_service}"')
    connector_cpu = ('metric.type="vpcaccess.googleapis.com/connector/cpu/utilizations" AND '
                     f'resource.type="vpc_access_connector" AND resource.label.connector_name="{t.connector}"')
    db_backends = ('metric.type="cloudsql.googleapis.com/database/postgresql/num_backends" AND '
                   'resource.type="cloudsql_database" AND '
                   f'resource.label.database_id="{p}:{t.sql_instance}"')
    policies = [
        AlertPolicyParams(project=p, display_name=f"[{req.incident_id}] {t.backend_service} HTTP 5xx ratio > 10%",
                          metric_filter=run_requests + ' AND metric.label.response_code_class="5xx"',
                          denominator_filter=run_requests, threshold=0.10, severity="ERROR",
                          aligner="ALIGN_RATE"),
        AlertPolicyParams(project=p, display_name=f"[{req.incident_id}] {t.connector} utilisation > 80%",
                          metric_filter=connector_cpu, threshold=0.80, severity="WARNING",
                          aligner="ALIGN_PERCENTILE_99"),
        AlertPolicyParams(project=p, display_name=f"[{req.incident_id}] {t.connector} utilisation > 90%",
                          metric_filter=connector_cpu, threshold=0.90, severity="CRITICAL",
                          aligner="ALIGN_PERCENTILE_99"),
    ]
    limit = effective_max_connections(req)
    if limit:
        for share, severity in ((0.8, "WARNING"), (0.9, "CRITICAL")):
            policies.append(AlertPolicyParams(
                project=p, severity=severity, aligner="ALIGN_MEAN",
                display_name=(f"[{req.incident_id}] {t.sql_instance} connections > "
                              f"{share:.0%} of max_connections ({int(limit * share)})"),
                metric_filter=db_backends, threshold=int(limit * share),
                documentation=DB_CONNECTION_TIME_NOTE))
    return policies
