"""The worker's named notification channels, read once at start-up.

A request routes a recipient to channel *names*; what a name means lives here, on the
worker, because webhook URLs and routing keys are secrets. Each secret is given either
as a value in the file or as a Secret Manager version name (``*_secret``), which the
``notify_channel`` activity reads at send time: the value never enters a request, the
workflow history or a log line.

File (``REMEDIATION_NOTIFY_CHANNELS_FILE``)::

    {"channels": {
      "db-slack": {"kind": "slack", "webhook_url_secret": "projects/P/secrets/S/versions/latest"},
      "db-pager": {"kind": "pagerduty", "routing_key_secret": "projects/P/secrets/K/versions/3"},
      "audit":    {"kind": "webhook", "url": "https://audit.example.com/hook"}}}

Without the variable only the built-in ``log`` channel exists. Unknown keys are refused at
every level; URLs must be https (http only to a loopback host, for local rehearsal) and
never link-local or a metadata server (``runbook.urls``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator,
                      model_validator)

from runbook.notifications import CHANNEL_NAME, LOG_CHANNEL
from runbook.urls import endpoint_url_problem

ENV_NOTIFY_CHANNELS_FILE = "REMEDIATION_NOTIFY_CHANNELS_FILE"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
# A Secret Manager version resource name; ``latest`` follows rotations.
SECRET_VERSION = re.compile(r"projects/[^/\s]+/secrets/[^/\s]+/versions/(latest|[1-9]\d*)")
# PagerDuty refuses any other routing key with 400 "Length of 'routing_key' is incorrect
# (should be 32 characters)" / "cannot contain non-alphanumeric characters".
ROUTING_KEY = re.compile(r"[A-Za-z0-9]{32}")


class NotifyChannelsError(ValueError):
    """A bad channels file; the message names the file, the channel and the field."""


def _url_problem(value: str) -> str | None:
    # The same rule as every other destination the worker sends to (runbook/urls.py);
    # a secret URL read at send time is checked again, then resolved, before each send.
    return endpoint_url_problem(value)


class ChannelBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # (value field, secret field) of the one credential this kind needs.
    CREDENTIAL: ClassVar[tuple[str, str] | None] = None

    @model_validator(mode="after")
    def _one_credential(self) -> "ChannelBase":
        if self.CREDENTIAL is None:
            return self
        value_field, secret_field = self.CREDENTIAL
        value, secret = getattr(self, value_field), getattr(self, secret_field)
        if (value is None) == (secret is None):
            raise ValueError(f"give exactly one of {value_field!r} (the value) or "
                             f"{secret_field!r} (a Secret Manager version name)")
        # Neither value is echoed: a secret put in the wrong field would reach the log.
        if secret is not None and not SECRET_VERSION.fullmatch(secret):
            raise ValueError(f"{secret_field}: not a Secret Manager version name "
                             "(projects/P/secrets/S/versions/latest or .../versions/N)")
        if value is not None:
            problem = self.value_problem(value)
            if problem:
                raise ValueError(f"{value_field}: {problem}")
        return self

    def value_problem(self, value: str) -> str | None:
        return _url_problem(value)

    def credential(self) -> tuple[str | None, str | None, str]:
        """(value, secret version name, value field name); exactly one of the first two."""
        assert self.CREDENTIAL is not None, f"kind {getattr(self, 'kind', '?')} has no credential"
        value_field, secret_field = self.CREDENTIAL
        return getattr(self, value_field), getattr(self, secret_field), value_field


class LogChannel(ChannelBase):
    kind: Literal["log"] = "log"


class SlackChannel(ChannelBase):
    """A Slack incoming webhook (the URL is the credential)."""

    kind: Literal["slack"]
    webhook_url: str | None = None
    webhook_url_secret: str | None = None
    CREDENTIAL = ("webhook_url", "webhook_url_secret")


class PagerDutyChannel(ChannelBase):
    """A PagerDuty Events API v2 integration (the routing key is the credential)."""

    kind: Literal["pagerduty"]
    routing_key: str | None = None
    routing_key_secret: str | None = None
    events_url: str = PAGERDUTY_EVENTS_URL
    CREDENTIAL = ("routing_key", "routing_key_secret")

    @field_validator("events_url")
    @classmethod
    def _events_url(cls, v: str) -> str:
        problem = _url_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    def value_problem(self, value: str) -> str | None:
        if not ROUTING_KEY.fullmatch(value):
            return "a PagerDuty Events API v2 routing key is 32 letters and digits"
        return None


class WebhookChannel(ChannelBase):
    """Any HTTPS endpoint taking the notice as JSON (the URL may embed a token)."""

    kind: Literal["webhook"]
    url: str | None = None
    url_secret: str | None = None
    CREDENTIAL = ("url", "url_secret")


ChannelConfig = Annotated[Union[LogChannel, SlackChannel, PagerDutyChannel, WebhookChannel],
                          Field(discriminator="kind")]
_CHANNEL = TypeAdapter(ChannelConfig)


class NotifyChannels:
    """The configured channels by name; ``log`` is always there."""

    def __init__(self, channels: Mapping[str, ChannelConfig] | None = None,
                 source: str = "built-in") -> None:
        self.source = source  # where the configuration came from, for error messages
        self._channels: dict[str, ChannelConfig] = {LOG_CHANNEL: LogChannel()}
        for name, channel in (channels or {}).items():
            if name == LOG_CHANNEL and channel.kind != "log":
                raise NotifyChannelsError(f"{source}: channels.{name}: the {LOG_CHANNEL!r} "
                                          "channel is built in (the worker log) and cannot be "
                                          f"redefined as kind {channel.kind!r}")
            self._channels[name] = channel

    def get(self, name: str) -> ChannelConfig | None:
        return self._channels.get(name)

    def names(self) -> list[str]:
        return sorted(self._channels)

    @classmethod
    def from_mapping(cls, data: Any, source: str) -> "NotifyChannels":
        """Validate ``{"channels": {name: {...}}}``; errors name ``source``, channel, field."""
        if not isinstance(data, dict) or set(data) != {"channels"} \
                or not isinstance(data["channels"], dict):
            raise NotifyChannelsError(f"{source}: " + 'expected {"channels": {"<name>": '
                                      '{"kind": ...}}} and nothing else at the top level')
        channels: dict[str, ChannelConfig] = {}
        problems: list[str] = []
        for name, raw in data["channels"].items():
            if not CHANNEL_NAME.fullmatch(name):
                problems.append(f"channels.{name}: not a channel name "
                                "(1-63 of a-z, 0-9, '_', '.', '-')")
                continue
            try:
                channels[name] = _CHANNEL.validate_python(raw)
            except ValidationError as err:
                problems += [_problem(name, e) for e in err.errors(include_url=False)]
        if problems:
            raise NotifyChannelsError(f"{source}: " + "; ".join(problems))
        return cls(channels, source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "NotifyChannels":
        source = f"{ENV_NOTIFY_CHANNELS_FILE}={path}"
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise NotifyChannelsError(f"{source}: cannot read: {err.strerror or err}") from None
        except json.JSONDecodeError as err:
            raise NotifyChannelsError(f"{source}: not JSON: {err}") from None
        return cls.from_mapping(data, source)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "NotifyChannels":
        env = os.environ if env is None else env
        path = (env.get(ENV_NOTIFY_CHANNELS_FILE) or "").strip()
        return cls.from_file(path) if path else cls()


def _problem(channel: str, e: Any) -> str:
    # loc is (kind tag, field) for a member of the union; a bad/missing kind has no tag.
    loc = [str(p) for p in e["loc"] if str(p) not in {"log", "slack", "pagerduty", "webhook"}]
    msg = e["msg"].removeprefix("Value error, ")
    field = re.match(r"([a-z_]+): ", msg) if not loc else None
    if field:  # a model-level check about one field: report it at that field
        loc, msg = [field.group(1)], msg[field.end():]
    where = ".".join(["channels", channel, *loc])
    if e["type"] == "union_tag_invalid" or e["type"] == "union_tag_not_found":
        where, msg = f"channels.{channel}.kind", ("must be one of 'slack', 'pagerduty', "
                                                  "'webhook', 'log'")
    # Never echo input values: a misplaced key or URL would land in the worker's log.
    return f"{where}: {msg}"
