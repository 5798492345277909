"""Readiness probes for the parts of the stack; each returns True/False, never raises."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime

import httpx


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


async def _temporal_ready(address: str, namespace: str, search_attributes: list[str]) -> bool:
    # Imported lazily: `python -m devstack --help` should not pay for the SDK import.
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
    from temporalio.client import Client

    try:
        client = await Client.connect(address, namespace=namespace)
        # The frontend answers before the namespace and the search attributes are usable;
        # a run started too early would fail its first upsert, so wait for those too.
        resp = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace))
    except Exception:
        return False
    return all(name in resp.custom_attributes for name in search_attributes)


def temporal_ready(address: str, namespace: str, search_attributes: list[str]) -> bool:
    return asyncio.run(_temporal_ready(address, namespace, search_attributes))


async def _worker_polling(address: str, namespace: str, task_queue: str, since: datetime) -> bool:
    from temporalio.client import Client

    from cli.client import live_pollers

    try:
        client = await Client.connect(address, namespace=namespace)
        return bool(await live_pollers(client, namespace, task_queue, since=since))
    except Exception:
        return False


def worker_polling(address: str, namespace: str, task_queue: str, since: datetime) -> bool:
    """True once a worker started after ``since`` polls the queue (stale pollers don't count)."""
    return asyncio.run(_worker_polling(address, namespace, task_queue, since))
