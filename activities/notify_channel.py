"""The ``notify_channel`` activity: one notice, one configured channel, a visible result.

Unlike the legacy ``notify`` activity, a failure is raised, classified once, so the
workflow's RetryPolicy retries what may pass later and records the rest:

- ``ChannelNotConfigured`` (non-retryable): the name is not in the worker's channels.
- ``ChannelRejected`` (non-retryable): HTTP 4xx other than 408/429, a redirect, or a
  destination the worker must not send to (not https, link-local, metadata server, a
  name resolving to one: ``runbook.urls``), refused before anything is sent.
- ``ChannelUnavailable`` (retryable): 408, 429, 5xx, timeouts, connection errors;
  ``Retry-After`` becomes the next retry delay.
- ``ChannelSecretUnavailable``: the credential's Secret Manager version could not be
  read (403/404/disabled: non-retryable; 429/5xx/transport: retryable) or is unusable.

Secrets: a ``*_secret`` reference is read at send time and kept in a local variable.
Channels are named ``kind:name`` in every message and log line; response excerpts have
the value scrubbed out. Requests go through httpx's transport, not ``AsyncClient``:
the client logs every request URL at INFO (logger ``httpx``), and a Slack webhook URL
is itself the secret. Neither vendor client is used to send: ``slack_sdk``'s
``WebhookClient`` logs the webhook URL at DEBUG; the ``pagerduty`` client retries a 429
without limit unless given an undocumented negative retry count, and sleeps in-process.
httpx sends each request exactly once and leaves retries to Temporal.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httplib2
import httpx
from google.auth import exceptions as auth_exc
from googleapiclient.errors import HttpError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.clients import GcpClients, execute
from activities.notify_channels import ENV_NOTIFY_CHANNELS_FILE, NotifyChannels, ChannelBase
from activities.notify_formats import (PAGERDUTY_ACTION, PAGERDUTY_SKIPPED, dedup_key, pagerduty_event,
                                       slack_message, webhook_message)
from observability.step_metrics import record_notification_failure
from runbook import activity_names
from runbook.notifications import ChannelDelivery, ChannelNotice
from runbook.urls import resolved_url_problem, url_host

NOT_CONFIGURED = "ChannelNotConfigured"
REJECTED = "ChannelRejected"
UNAVAILABLE = "ChannelUnavailable"
SECRET_UNAVAILABLE = "ChannelSecretUnavailable"

# One attempt's budget; Temporal's start-to-close timeout should exceed it.
SEND_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# A Retry-After beyond this is not honoured as given: a notification that waits longer
# is no longer timely, and a bad header must not park it for hours.
MAX_RETRY_AFTER_S = 900.0
_EXCERPT = 200


def secret_fragments(secret: str) -> list[str]:
    """Substrings of a credential a receiver might echo: the value itself and, for a
    URL, its path and query and each token-like path segment (Slack's token is a path)."""
    parts = urlsplit(secret)
    fragments = [secret]
    if parts.scheme and parts.netloc:
        fragments += [parts.path, parts.query]
        fragments += [seg for seg in parts.path.split("/") if len(seg) >= 8]
    return sorted({f for f in fragments if len(f) > 1}, key=len, reverse=True)


def scrub(text: str, secret: str) -> str:
    for fragment in secret_fragments(secret):
        text = text.replace(fragment, "***")
    return text


def _excerpt(text: str, secret: str) -> str:
    return scrub(re.sub(r"\s+", " ", text).strip(), secret)[:_EXCERPT]


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """``Retry-After`` (delay-seconds or HTTP-date) as a delay, capped; None if absent/bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError):
            return None
    if seconds != seconds or seconds <= 0:  # NaN or already due
        return None
    return timedelta(seconds=min(seconds, MAX_RETRY_AFTER_S))


def classify_response(label: str, response: httpx.Response, secret: str,
                      now: datetime) -> None:
    """Raise the classified error for a response that is not a success."""
    status = response.status_code
    if 200 <= status < 300:
        return
    body = _excerpt(response.text, secret)
    message = f"{label}: HTTP {status}" + (f": {body}" if body else "")
    if status in (408, 429) or status >= 500:
        raise ApplicationError(message, type=UNAVAILABLE, non_retryable=False,
                               next_retry_delay=retry_after(response.headers.get("retry-after"),
                                                            now))
    if 300 <= status < 400:
        message += " (redirects are not followed: configure the final URL)"
    raise ApplicationError(message, type=REJECTED, non_retryable=True)


async def check_destination(label: str, url: str, secret: str) -> None:
    """Resolve the URL's host and refuse a destination the worker must never send to
    (``runbook.urls``): ``ChannelRejected``, non-retryable, before anything is sent."""
    try:
        problem = await resolved_url_problem(url)
    except OSError as err:  # DNS may answer later: like a connection failure
        detail = scrub(str(err).replace(url, label), secret)
        raise ApplicationError(f"{label}: cannot resolve the destination host: "
                               f"{type(err).__name__}: {detail[:_EXCERPT]}",
                               type=UNAVAILABLE, non_retryable=False) from None
    if problem:
        raise ApplicationError(f"{label}: destination refused, nothing was sent: {problem}",
                               type=REJECTED, non_retryable=True)


async def post_json(label: str, url: str, payload: dict, secret: str) -> httpx.Response:
    """POST ``payload`` once to a checked destination; transport failures become
    ``ChannelUnavailable``."""
    await check_destination(label, url, secret)
    try:
        request = httpx.Request("POST", url, json=payload,
                                headers={"User-Agent": "gcp-remediation-runbooks"},
                                extensions={"timeout": SEND_TIMEOUT.as_dict()})
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as err:
        # A malformed URL (e.g. read from a secret) never gets better by retrying.
        detail = scrub(str(err).replace(url, label), secret)
        raise ApplicationError(f"{label}: invalid URL: {detail[:_EXCERPT]}", type=REJECTED,
                               non_retryable=True) from None
    try:
        async with httpx.AsyncHTTPTransport(retries=0) as transport:
            response = await transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
    except httpx.TransportError as err:
        detail = scrub(str(err).replace(url, label), secret)
        raise ApplicationError(f"{label}: {type(err).__name__}: {detail[:_EXCERPT]}",
                               type=UNAVAILABLE, non_retryable=False) from None
    classify_response(label, response, secret, datetime.now(timezone.utc))
    return response


def read_secret(clients: GcpClients, name: str) -> str:
    """The text of a Secret Manager version (``versions.access``), once, no retries."""
    api = clients.discovery("secretmanager").projects().secrets().versions()
    data = execute(api.access(name=name))["payload"]["data"]
    # Values added with `echo ... | gcloud secrets versions add` end in a newline; no URL
    # or routing key has meaningful surrounding whitespace.
    return base64.b64decode(data).decode("utf-8").strip()


class ChannelNotifyActivities:
    """``notify_channel``: needs the configured channels and, for ``*_secret``
    references, the worker's Google clients (None: references cannot be resolved)."""

    def __init__(self, channels: NotifyChannels, clients: GcpClients | None) -> None:
        self.channels = channels
        self.clients = clients

    @activity.defn(name=activity_names.NOTIFY_CHANNEL)
    async def notify_channel(self, notice: ChannelNotice) -> ChannelDelivery:
        channel = self.channels.get(notice.channel)
        try:
            return await self._send(notice, channel)
        except ApplicationError:
            record_notification_failure(channel.kind if channel else "not_configured")
            raise

    async def _send(self, notice: ChannelNotice, channel: ChannelBase | None) -> ChannelDelivery:
        if channel is None:
            raise ApplicationError(
                f"channel {notice.channel!r} is not configured on this worker (it has: "
                f"{', '.join(self.channels.names())}); define it in the file named by "
                f"{ENV_NOTIFY_CHANNELS_FILE} ({self.channels.source})",
                type=NOT_CONFIGURED, non_retryable=True)
        label = f"{channel.kind}:{notice.channel}"
        if channel.kind == "log":
            message = webhook_message(notice)
            activity.logger.info("notification %s", json.dumps(message, sort_keys=True),
                                 extra={"notification": message})
            return ChannelDelivery(channel=notice.channel, kind="log", detail="worker log")
        if channel.kind == "pagerduty" and notice.level not in PAGERDUTY_ACTION:
            return ChannelDelivery(channel=notice.channel, kind="pagerduty", sent=False,
                                   detail=PAGERDUTY_SKIPPED)
        secret = await self._credential(label, channel)
        if channel.kind == "slack":
            url = secret
            response = await post_json(label, url, slack_message(notice, datetime.now(
                timezone.utc)), secret)
            detail = f"HTTP {response.status_code}"
        elif channel.kind == "webhook":
            url = secret
            response = await post_json(label, url, webhook_message(notice), secret)
            detail = f"HTTP {response.status_code}"
        else:
            url = channel.events_url
            await post_json(label, url, pagerduty_event(notice, secret), secret)
            detail = f"dedup_key={dedup_key(notice)}"
        # The host only: the rest of a webhook URL may be its token.
        activity.logger.info("notification %s to %s via %s (%s): %s", notice.level,
                             notice.recipient, label, url_host(url), detail)
        return ChannelDelivery(channel=notice.channel, kind=channel.kind, detail=detail)

    async def _credential(self, label: str, channel: ChannelBase) -> str:
        value, ref, field = channel.credential()
        if ref is None:
            return str(value)
        if self.clients is None:
            raise ApplicationError(f"{label}: {field} is a Secret Manager reference ({ref}) "
                                   "but this worker has no Google clients to read it",
                                   type=SECRET_UNAVAILABLE, non_retryable=True)
        try:
            secret = await asyncio.to_thread(read_secret, self.clients, ref)
        except HttpError as err:
            status = err.status_code or 0
            retryable = status in (408, 429) or status >= 500
            reason = str(getattr(err, "reason", "") or "")[:_EXCERPT]
            raise ApplicationError(f"{label}: cannot read {field} from {ref}: HTTP {status} "
                                   f"{reason}".rstrip(), type=SECRET_UNAVAILABLE,
                                   non_retryable=not retryable) from None
        except (auth_exc.DefaultCredentialsError, auth_exc.RefreshError) as err:
            raise ApplicationError(f"{label}: cannot read {field} from {ref}: credentials: "
                                   f"{err}", type=SECRET_UNAVAILABLE, non_retryable=True) from None
        except (httplib2.HttpLib2Error, auth_exc.TransportError, OSError) as err:
            raise ApplicationError(f"{label}: cannot read {field} from {ref}: "
                                   f"{type(err).__name__}: {err}", type=SECRET_UNAVAILABLE,
                                   non_retryable=False) from None
        except (KeyError, TypeError, binascii.Error, UnicodeDecodeError) as err:
            raise ApplicationError(f"{label}: {ref} holds no readable text payload "
                                   f"({type(err).__name__})", type=SECRET_UNAVAILABLE,
                                   non_retryable=True) from None
        problem = channel.value_problem(secret)
        if problem:
            raise ApplicationError(f"{label}: the value in {ref} is not a usable {field}: "
                                   f"{problem}", type=SECRET_UNAVAILABLE, non_retryable=True)
        return secret
