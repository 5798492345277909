"""The remediation worker: hosts the workflows and the Google Cloud activities.

    python worker.py

Environment: TEMPORAL_ADDRESS (localhost:7233), TEMPORAL_NAMESPACE (default), for Temporal
Cloud or a TLS cluster TEMPORAL_API_KEY / TEMPORAL_TLS_* (runbook/temporal_connection.py),
REMEDIATION_TASK_QUEUE (remediation), the backend settings read by ``activities.settings``
(REMEDIATION_BACKEND=sim|gcp, REMEDIATION_GCP_ENDPOINT, ...) and the notification channels
(REMEDIATION_NOTIFY_CHANNELS_FILE, see activities/notify_channels.py) and verified approvals
(REMEDIATION_APPROVAL_IDENTITY, REMEDIATION_APPROVAL_ALLOW_CLAIMED,
REMEDIATION_APPROVAL_PUBLIC_KEYS_FILE, see activities/identity.py).

Every worker process also serves the target-lease keepers (task queue
``remediation-leases``), so leases work whichever worker is up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.failure_attempts import FailureAttemptInterceptor
from activities.identity import ApprovalIdentityConfig, IdentityActivities
from activities.liveness import ReadLivenessInterceptor
from activities.leases import LeaseActivities
from activities.run_history import RunHistoryActivities
from observability.step_logs import StepLogInterceptor
from observability.step_metrics import StepMetricsInterceptor
from runbook.leases import LEASE_TASK_QUEUE
from runbook.messages import DEFAULT_TASK_QUEUE
from workflows.identity_checks import EnvelopeCheckInterceptor
from workflows.lease_keeper import TargetLeaseWorkflow
from workflows.plan_only import RemediationPlanWorkflow
from workflows.remediation import RemediationWorkflow
from workflows.rollback_only import RemediationRollbackWorkflow

WORKFLOWS = [RemediationWorkflow, RemediationPlanWorkflow, RemediationRollbackWorkflow]


HEARTBEAT_SEND_INTERVAL = timedelta(seconds=2)
# The envelope check (workflows/identity_checks.py) verifies Ed25519 signatures in update
# validators. cryptography's Rust core must not be imported a second time inside the
# sandbox (a re-initialised extension aborts the process), so it and PyJWT pass through.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("cryptography", "jwt"))


def build_worker(client: Client, task_queue: str, activities: list,
                 identity: ApprovalIdentityConfig | None = None, **overrides) -> Worker:
    """The worker as production runs it; tests build theirs here too (``overrides`` for
    what a test must vary, e.g. no workflow cache). ``activities`` are the cloud's; the
    ones that talk to Temporal itself (leases, reading a run's history) are added here.
    ``identity``: verified approvals (activities/identity.py); default from the environment."""
    identity = identity or ApprovalIdentityConfig.from_env()
    options = dict(workflows=WORKFLOWS, workflow_runner=WORKFLOW_RUNNER,
                   activities=[*activities, *temporal_activities(client),
                               IdentityActivities(identity).resolve_identity],
                   interceptors=[FailureAttemptInterceptor(), ReadLivenessInterceptor(),
                                 EnvelopeCheckInterceptor(identity.verifier),
                                 # Step duration and attempts on the worker's /metrics;
                                 # step start/finish/failure in the logs. (The step spans
                                 # come with the client: observability/tracing.py.)
                                 StepMetricsInterceptor(), StepLogInterceptor()],
                   # Let in-flight activities finish or checkpoint on shutdown.
                   graceful_shutdown_timeout=timedelta(seconds=10),
                   # Heartbeats reach the server at most this far apart (the SDK's default
                   # is 0.8 x the heartbeat timeout: 8 s). A cancellation (abort, hard
                   # limit) only reaches an activity in a heartbeat's answer, and the latest
                   # checkpoint only survives a crash once sent: both within 2 s instead of 8.
                   max_heartbeat_throttle_interval=HEARTBEAT_SEND_INTERVAL)
    return Worker(client, task_queue=task_queue, **(options | overrides))


def temporal_activities(client: Client) -> list:
    """The remediation worker's activities that talk to Temporal itself: take a lease,
    read another run's history."""
    return [LeaseActivities(client).acquire_lease, RunHistoryActivities(client).read_changes_in_force]


def lease_keeper_activities(client: Client) -> list:
    """The lease worker's: the keepers' liveness check of the runs holding leases."""
    return [LeaseActivities(client).describe_runs]


def build_lease_worker(client: Client) -> Worker:
    """The lease keepers' worker (workflows/lease_keeper.py), beside the main one in every
    worker process: a keeper is served whichever worker is up."""
    return Worker(client, task_queue=LEASE_TASK_QUEUE, workflows=[TargetLeaseWorkflow],
                  activities=lease_keeper_activities(client),
                  interceptors=[ReadLivenessInterceptor()])


async def main() -> int:
    from activities import build_activities
    from activities.settings import Settings
    from observability.health import ENV_HEALTH_BIND, WorkerHealth, parse_bind
    from observability.logs import configure_logging
    from observability.metrics import ENV_METRICS_BIND, process_runtime
    from observability.tracing import configure_tracing, tracing_interceptors
    from runbook.temporal_connection import connect_options
    from runbook.temporal_connection import describe as describe_connection

    # Every setting is checked before connecting: a typo exits at once, naming the variable,
    # instead of a worker that starts and then misbehaves.
    try:
        configure_logging("remediation-worker")
        tracing = configure_tracing("remediation-worker")
        # TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and, for Temporal Cloud or a TLS cluster,
        # TEMPORAL_API_KEY / TEMPORAL_TLS_* (runbook/temporal_connection.py).
        connection = connect_options()
        task_queue = os.environ.get("REMEDIATION_TASK_QUEUE", DEFAULT_TASK_QUEUE)
        # Off unless set (0.0.0.0:9464 / :8081 in compose and Kubernetes, loopback under
        # ./dev up): two workers on one host must not fight over a port by default.
        metrics_bind = os.environ.get(ENV_METRICS_BIND, "")
        health_bind = os.environ.get(ENV_HEALTH_BIND, "")
        if health_bind:
            parse_bind(health_bind)
        runtime = process_runtime(metrics_bind)
        settings = Settings.from_env()
        identity = ApprovalIdentityConfig.from_env()
    except ValueError as err:
        print(f"worker: {err}", file=sys.stderr)
        return 2
    try:
        client = await Client.connect(**connection, data_converter=pydantic_data_converter,
                                      interceptors=tracing_interceptors(), runtime=runtime)
        worker = build_worker(client, task_queue, build_activities(settings), identity)
        lease_worker = build_lease_worker(client)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        logging.info("worker on %s task_queue=%s backend=%s metrics=%s health=%s",
                     describe_connection(connection), task_queue, settings.backend,
                     metrics_bind or "off", health_bind or "off")
        async with worker, lease_worker:
            if health_bind:
                async with WorkerHealth(client, task_queue, health_bind, [worker, lease_worker]):
                    await stop.wait()
            else:
                await stop.wait()
            logging.info("shutting down: finishing in-flight activities")
    finally:
        tracing.shutdown()  # the spans still batched, before os._exit skips teardown
    return 0


if __name__ == "__main__":
    code = asyncio.run(main())
    # Skip interpreter finalisation: the SDK's Rust runtime can abort it after a clean
    # shutdown (temporalio/sdk-python#300), turning a graceful stop into exit 134.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
