"""Notifications: a structured log line, or a JSON webhook.

A channel that fails is reported in ``NotifyOutcome.failed`` and never raised: a dead
webhook must not block a rollback or an escalation that is already under way.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
from temporalio import activity

from runbook import activity_names
from runbook.activity_io import NotifyOutcome, NotifyParams

WEBHOOK_TIMEOUT_S = 10.0


def _label(url: str) -> str:
    # Webhook URLs often embed a token in the path: name the channel by scheme and host.
    parts = urlsplit(url)
    return f"webhook:{parts.scheme}://{parts.netloc}"


class NotifyActivities:
    @activity.defn(name=activity_names.NOTIFY)
    async def notify(self, p: NotifyParams) -> NotifyOutcome:
        message = {"run_id": p.run_id, "incident_id": p.incident_id, "level": p.level,
                   "recipient": p.recipient, "subject": p.subject, "body": p.body}
        delivered: list[str] = []
        failed: list[str] = []
        for channel in p.channels:
            if channel.kind == "log":
                activity.logger.info("notification %s", json.dumps(message, sort_keys=True),
                                     extra={"notification": message})
                delivered.append("log")
                continue
            if not channel.url:
                failed.append("webhook: no url configured")
                continue
            label = _label(channel.url)
            try:
                async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as client:
                    resp = await client.post(channel.url, json=message)
                if resp.is_success:
                    delivered.append(label)
                else:
                    failed.append(f"{label}: HTTP {resp.status_code}")
            except httpx.HTTPError as err:
                failed.append(f"{label}: {type(err).__name__}: {err}")
        return NotifyOutcome(delivered=delivered, failed=failed)
