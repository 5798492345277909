"""`python -m approval` (or `runbook-approval`): the approval service, configured from the
environment (approval/config.py), served by uvicorn."""

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
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                  data_converter=pydantic_data_converter,
                                  identity=f"runbook-approval-service@{socket.gethostname()}",
                                  lazy=True)
    sender = ActionSender(client, signer, task_queue=settings.task_queue)
    routers += slack_routers(settings, sender)
    app = create_app(settings, sender, verifier, extra_routers=routers)
    log.info("approval service on %s:%s (public %s); issuers: %s; Temporal %s/%s, queue %s",
             settings.host, settings.port, settings.public_url, ", ".join(verifier.issuers),
             settings.temporal_address, settings.temporal_namespace, settings.task_queue)
    config: Any = uvicorn.Config(app, host=settings.host, port=settings.port,
                                 log_level="info", proxy_headers=False)
    await uvicorn.Server(config).serve()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ServiceSettings.from_env()
        asyncio.run(serve(settings))
    except ConfigError as err:
        print(f"approval service: configuration error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
