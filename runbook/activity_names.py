"""Names of the activities, the one contract between the runbook data and the worker.

The workflow schedules activities by these names (the runbook is data); the activity
classes register under the same names. Tests register doubles under them too.
"""

DIAGNOSE = "diagnose"
NOTIFY = "notify"

# Phase 1: infrastructure
SCALE_CONNECTOR = "scale_connector"
EXPAND_SQL = "expand_sql"
RESTORE_SQL = "restore_sql"
DEPLOY_REVISION = "deploy_revision"
ROUTE_TRAFFIC_TO_LATEST = "route_traffic_to_latest"
RESTORE_SERVICE = "restore_service"
VERIFY_INFRASTRUCTURE = "verify_infrastructure"
CHECK_REDIS = "check_redis"

# Phase 2: application configuration
CONFIGURE_HEALTH_CHECK = "configure_health_check"
RESTORE_HEALTH_CHECK = "restore_health_check"
SET_BACKEND_SERVICE_TIMEOUT = "set_backend_service_timeout"
RESTORE_BACKEND_SERVICE = "restore_backend_service"
CHECK_SECRETS = "check_secrets"

# Phase 3: integration and monitoring
ENSURE_ALERT_POLICY = "ensure_alert_policy"
DELETE_ALERT_POLICY = "delete_alert_policy"
ENSURE_CERTIFICATE = "ensure_certificate"
DELETE_CERTIFICATE = "delete_certificate"

# Phase 4: golden path validation
PROBE_HEALTH = "probe_health"
PROBE_WEBSOCKET = "probe_websocket"
SAMPLE_ERROR_RATE = "sample_error_rate"

# Deferred, irreversible cleanup
DELETE_OLD_REVISIONS = "delete_old_revisions"

# One notification to one channel (Slack, PagerDuty, webhook, log), retried by Temporal
NOTIFY_CHANNEL = "notify_channel"

# Target leases (the keeper workflow lives in workflows/lease_keeper.py)
ACQUIRE_LEASE = "acquire_lease"
DESCRIBE_RUNS = "describe_runs"

# The run's identity policy and verified requester, resolved once at start (identity-1)
RESOLVE_IDENTITY = "resolve_identity"

# Rollback of a terminated run's changes, read from its history
READ_CHANGES_IN_FORCE = "read_changes_in_force"

# Activities that change nothing. Their heartbeats only say "this worker is alive" (they
# carry no checkpoint), so the worker sends them in the background (activities/liveness.py)
# and a dead worker's read is retried after its short heartbeat timeout, not its whole
# start-to-close timeout.
READ_ONLY = frozenset({
    DIAGNOSE, NOTIFY, NOTIFY_CHANNEL, VERIFY_INFRASTRUCTURE, CHECK_REDIS, CHECK_SECRETS,
    PROBE_HEALTH, PROBE_WEBSOCKET, SAMPLE_ERROR_RATE, ACQUIRE_LEASE, DESCRIBE_RUNS,
    READ_CHANGES_IN_FORCE, RESOLVE_IDENTITY,
})
# The heartbeat timeout the workflow gives them: a crashed worker costs this long.
READ_HEARTBEAT_S = 10
