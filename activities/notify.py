"""Notifications: a structured log line, or a JSON webhook.

A channel that fails is reported in ``NotifyOutcome.failed`` and never raised: a dead
webhook must not block a rollback or an escalation that is already under way. That
includes a destination the worker must not send to (``runbook.urls``: not https,
link-local, a metadata server, or a name resolving to one): it is recorded as failed
with the reason, and nothing is sent there.

Requests go through ``notify_channel.post_json`` (one attempt, httpx's transport): the
httpx client would log the full webhook URL, and its path often holds a token.
"""

from __future__ import annotations

import json

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notify_channel import post_json
from observability.step_metrics import record_notification_failure
from runbook import activity_names
from runbook.activity_io import NotifyOutcome, NotifyParams
from runbook.urls import url_host


def _label(url: str) -> str:
    # Webhook URLs often embed a token in the path: name the channel by scheme and host.
    return f"webhook:{url_host(url)}"


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
                record_notification_failure("webhook")
                failed.append("webhook: no url configured")
                continue
            label = _label(channel.url)
            try:
                await post_json(label, channel.url, message, channel.url)
            except ApplicationError as err:  # refused destination, HTTP or transport error
                activity.logger.warning("notification to %s failed: %s", label, err.message)
                record_notification_failure("webhook")
                failed.append(err.message)
                continue
            delivered.append(label)
        return NotifyOutcome(delivered=delivered, failed=failed)
