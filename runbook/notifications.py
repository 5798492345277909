"""Notification routing (request side) and the one-message-one-channel activity contract.

The request names *channels* by name only; what a name means (a Slack incoming webhook,
a PagerDuty routing key, a generic webhook URL) is worker configuration, because those
are secrets and must never enter a request or the workflow history.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runbook.activity_io import NotificationChannel

CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
# Always available, needs no configuration: a structured line in the worker log.
LOG_CHANNEL = "log"

# The Slack buttons of an "approval" notice, answered by the approval service
# (approval/slack_interactions.py): one name on both sides.
APPROVE_ACTION_ID = "runbook_approve"
REJECT_ACTION_ID = "runbook_reject"
# "approval": the gate just opened (identity-1): Slack shows Approve/Reject buttons.
NoticeLevel = Literal["reminder", "escalation", "breach", "outcome", "resolve", "approval"]


class NotificationRouting(BaseModel):
    """Recipient (a name on an escalation ladder, e.g. ``db-oncall``) -> channel names."""

    model_config = ConfigDict(extra="forbid")

    routes: dict[str, list[str]] = Field(default_factory=dict)
    # Channels for a recipient that has no route of its own.
    default: list[str] = Field(default_factory=lambda: [LOG_CHANNEL])
    # The form before safety-1 (a list of {"kind": "log"|"webhook", "url": ...}), kept so
    # runs started with it replay and notify as they did; a new run refuses it. Its URLs
    # are deliberately not re-validated here (a stricter rule would change how those runs
    # replay): the legacy ``notify`` activity checks each one, resolved, before sending
    # (runbook/urls.py) and records a refused destination as failed.
    legacy_channels: list[NotificationChannel] = Field(default_factory=list)

    @field_validator("default")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        return [_channel_name(n) for n in v]

    @field_validator("routes")
    @classmethod
    def _route_names(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return {recipient: [_channel_name(n) for n in names] for recipient, names in v.items()}

    @classmethod
    def from_legacy(cls, value: object) -> object:
        """Read the pre-safety-1 list form as ``legacy_channels``."""
        return {"legacy_channels": value} if isinstance(value, list) else value

    def channels_for(self, recipient: str) -> list[str]:
        return list(self.routes.get(recipient, self.default))


def _channel_name(name: str) -> str:
    if "://" in name or "/" in name:
        raise ValueError(f"{name[:40]!r} looks like a URL: webhook URLs and routing keys are "
                         "secrets; configure a named channel on the worker "
                         "(REMEDIATION_NOTIFY_CHANNELS_FILE) and route to its name")
    if not CHANNEL_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a channel name (1-63 of a-z, 0-9, '_', '.', '-')")
    return name


class ChannelNotice(BaseModel):
    """One message for one recipient on one channel: the ``notify_channel`` activity input."""

    run_id: str  # workflow id
    incident_id: str
    level: NoticeLevel
    recipient: str
    channel: str  # a channel name from the worker's configuration
    subject: str
    body: str
    gate: str | None = None
    phase: int | None = None
    deadline: datetime | None = None  # the gate's timeout, for reminders/escalations
    approve_command: str | None = None  # e.g. "runbook approve <id> --gate phase-1 ..."
    # Stable per run and gate: PagerDuty de-duplicates on it and resolves by it.
    dedup_key: str | None = None
    # For an "approval" notice (identity-1): the plan digest the buttons approve, the plan
    # rows the gate releases ("resource field: current -> desired"), and whether the
    # channel may show buttons (only when the run takes verified approvals).
    plan_digest: str | None = None
    changes: list[str] = Field(default_factory=list)
    buttons: bool = False


class ChannelDelivery(BaseModel):
    """What ``notify_channel`` returns when the channel took the message (or had
    nothing to do: ``sent`` False with the reason in ``detail``)."""

    channel: str
    kind: str  # log | slack | pagerduty | webhook
    sent: bool = True
    detail: str = ""


class ChannelFailure(BaseModel):
    """A channel that still failed after Temporal's retries, as the status records it."""

    recipient: str
    channel: str
    error: str
    attempts: int = 1
