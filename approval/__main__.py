"""`python -m approval` (or `runbook-approval`): the approval service, configured from the
environment (approval/config.py), served by uvicorn.

Logs and traces as every service of the project (observability/): REMEDIATION_LOG_FORMAT,
LOG_LEVEL (default INFO), and OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set (the
runs it starts carry its trace to the worker's steps). Temporal as the worker reaches it,
TLS and Temporal Cloud API keys included (approval/config.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import sys
from typing import Any

import uvicorn
from fastapi import APIRouter
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from approval.actions import ActionSender
from approval.config import ConfigError, ServiceSettings
from approval.dev_issuer import DevIssuer, dev_issuer_url
from approval.oidc import KeySource, TokenVerifier
from approval.service import create_app
from runbook.temporal_connection import describe as describe_connection
from observability.logs import LogConfigError, configure_logging
from observability.metrics import process_runtime
from observability.tracing import TracingConfigError, configure_tracing, tracing_interceptors

log = logging.getLogger("approval")


def build_verifier(settings: ServiceSettings) -> tuple[TokenVerifier, list[APIRouter]]:
    """The token verifier and, with RUNBOOK_DEV_ISSUER=1, the dev issuer's routes. The dev
    issuer's keys are handed to the verifier directly: no HTTP call to ourselves."""
    issuers = list(settings.issuers)
    key_sources: dict[str, KeySource] = {}
    routers: list[APIRouter] = []
    if settings.dev_issuer:
        dev = DevIssuer(dev_issuer_url(settings.public_url))
        issuers.append(dev.issuer_config())
        key_sources[dev.issuer] = dev
        routers.append(dev.router())
    try:
        return TokenVerifier(issuers, key_sources=key_sources), routers
    except ValueError as err:
        raise ConfigError(f"RUNBOOK_OIDC_ISSUERS: {err}") from None


def slack_routers(settings: ServiceSettings, sender: ActionSender) -> list[APIRouter]:
    """The Slack interactions router, when it is installed and Slack is configured."""
    if settings.slack_signing_secret_file is None:
        return []
    if importlib.util.find_spec("approval.slack_interactions") is None:
        log.warning("RUNBOOK_SLACK_SIGNING_SECRET_FILE is set but approval.slack_interactions "
                    "is not installed: Slack buttons will not work")
        return []
    from approval.slack_interactions import slack_router
    return [slack_router(settings, sender)]


async def serve(settings: ServiceSettings) -> None:
    signer = settings.load_signer()
    verifier, routers = build_verifier(settings)
    # Lazy: the service answers /healthz (and refuses actions with 503) while Temporal is
    # still starting, as in the dev stack.
    connection = settings.temporal_connect_options()
    client = await Client.connect(**connection, data_converter=pydantic_data_converter,
                                  identity=f"runbook-approval-service@{socket.gethostname()}",
                                  interceptors=tracing_interceptors(), lazy=True,
                                  # The SDK core's own log lines in our format (JSON in compose).
                                  runtime=process_runtime())
    sender = ActionSender(client, signer, task_queue=settings.task_queue)
    routers += slack_routers(settings, sender)
    app = create_app(settings, sender, verifier, extra_routers=routers)
    log.info("approval service on %s:%s (public %s); issuers: %s; Temporal %s, queue %s",
             settings.host, settings.port, settings.public_url, ", ".join(verifier.issuers),
             describe_connection(connection), settings.task_queue)
    # log_config=None: uvicorn installs no handlers of its own; its records reach ours
    # (observability/logs.py), access lines at DEBUG.
    config: Any = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                                 log_level=logging.getLogger().getEffectiveLevel(),
                                 proxy_headers=False)
    await uvicorn.Server(config).serve()


def main() -> None:
    tracing = None
    try:
        configure_logging("approval")
        tracing = configure_tracing("approval")
        settings = ServiceSettings.from_env()
        asyncio.run(serve(settings))
    except (ConfigError, LogConfigError, TracingConfigError) as err:
        print(f"approval service: configuration error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass
    finally:
        if tracing is not None:
            tracing.shutdown()  # send the spans still batched


if __name__ == "__main__":
    main()
