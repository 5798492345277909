"""Slack's Approve/Reject buttons -> the run, through the same ``ActionSender`` as the API.

The flow (https://docs.slack.dev/interactivity/handling-user-interaction):

1. A click makes Slack POST ``payload=<JSON>`` (form-encoded, type ``block_actions``) to
   the app's Interactivity Request URL, ``/slack/interactions`` here, signed with the
   app's signing secret (``X-Slack-Signature``: HMAC-SHA256 over
   ``v0:<X-Slack-Request-Timestamp>:<raw body>``). The raw body is verified before
   anything parses it; a timestamp more than 5 minutes away is a possible replay.
2. The Slack user id maps to an approver identity through the users file (an unmapped
   user is refused; nothing reaches the run). The identity is proven by Slack's
   signature, so the person's ``idp`` is ``slack:<team id>``.
3. Slack wants the HTTP answer within 3 seconds: the handler answers 200 at once and a
   background task sends the action to the run and reports the outcome through the
   interaction's ``response_url``: the original message updated in place for everyone
   (``replace_original``) when the run took it, an ephemeral note to the clicker alone
   when it was refused (the buttons stay for the other approvers). A ``block_actions``
   acknowledgement carries no message, so every reply goes through ``response_url``.

Secrets: the signing secret is read once from its file at router creation and never
logged; a ``response_url`` is a short-lived credential and is never logged either (its
host at most), and is only posted to when its host is Slack's (``hooks.slack.com``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, Response
from pydantic import ValidationError
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.webhook.async_client import AsyncWebhookClient

from approval.actions import ActionRefused, ActionRequest, ActionSender, Person
from approval.config import ENV_SLACK_SECRET_FILE, ENV_SLACK_USERS_FILE, ConfigError, ServiceSettings
from runbook.identity import normalize_identity
from runbook.messages import describe_validation_error
from runbook.notifications import APPROVE_ACTION_ID, REJECT_ACTION_ID
from runbook.urls import endpoint_url_problem, url_host

log = logging.getLogger("approval.slack")

INTERACTIONS_PATH = "/slack/interactions"
# Where Slack's response_url points; tests inject their loopback receiver's host.
SLACK_RESPONSE_HOSTS = frozenset({"hooks.slack.com"})
MAX_CLOCK_SKEW_S = 300  # Slack's advice: refuse requests more than 5 minutes off
# A block_actions payload repeats the whole message (up to 50 blocks of 3000 characters).
MAX_BODY_BYTES = 1 << 20
RESPONSE_TIMEOUT_S = 10
# Gate statuses that still take approvals: the buttons stay on the message.
OPEN_GATE_STATUSES = frozenset({"PENDING", "OPEN"})
OUTCOME_BLOCK_ID = "runbook-outcome"
_ACTS = {APPROVE_ACTION_ID: "approve", REJECT_ACTION_ID: "reject"}


class InteractionError(ValueError):
    """The request is signed but not an interaction this endpoint handles."""


@dataclass(frozen=True)
class Interaction:
    """One click on a runbook button, as Slack reported it."""

    act: str  # approve | reject
    workflow_id: str
    gate: str
    digest: str | None
    user_id: str
    team_id: str
    response_url: str
    message: dict[str, Any] | None  # the message the button is in (absent if ephemeral)


# ------------------------------------------------------------------ configuration -----

def read_signing_secret(path: Path | None) -> str:
    """The app's signing secret from its file; errors name the variable and the file,
    never the value."""
    where = f"{ENV_SLACK_SECRET_FILE} ({path})"
    if path is None:
        raise ConfigError(f"{ENV_SLACK_SECRET_FILE}: not set; it must name the file holding the "
                          "Slack app's signing secret (Basic Information > App Credentials)")
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where}: cannot read: {getattr(err, 'strerror', None) or err}") from None
    if not secret or not secret.isprintable():
        raise ConfigError(f"{where}: the file must hold the signing secret as one line of text")
    return secret


def read_slack_users(path: Path | None) -> dict[str, str]:
    """``{"users": {"U0123": "alice"}}``: Slack user id -> approver identity (normalised)."""
    if path is None:
        raise ConfigError(f"{ENV_SLACK_USERS_FILE}: not set; it must name a JSON file "
                          '{"users": {"<Slack user id>": "<approver identity>"}}')
    where = f"{ENV_SLACK_USERS_FILE} ({path})"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{where}: cannot read: {err.strerror or err}") from None
    except ValueError as err:
        raise ConfigError(f"{where}: not JSON ({err})") from None
    if not isinstance(data, dict) or set(data) != {"users"} or not isinstance(data["users"], dict):
        raise ConfigError(f'{where}: must be an object with only "users": '
                          '{"<Slack user id>": "<approver identity>"}')
    users: dict[str, str] = {}
    for user_id, identity in data["users"].items():
        # Slack user ids: U... (workspace) or W... (Enterprise Grid), upper-case alphanumerics.
        if not (user_id[:1] in ("U", "W") and user_id.isalnum() and user_id.isupper()
                and 3 <= len(user_id) <= 32):
            raise ConfigError(f"{where}: users.{user_id[:40]!r}: not a Slack user id "
                              "(U or W followed by upper-case letters and digits)")
        try:
            users[user_id] = normalize_identity(identity, f"users.{user_id}")
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
    return users


def response_url_problem(url: object, allowed_hosts: Collection[str]) -> str | None:
    """Why the service must not post to ``url`` (None: it may). Never repeats the URL."""
    if not isinstance(url, str):
        return "response_url is missing"
    problem = endpoint_url_problem(url)
    if problem:
        return f"response_url {problem}"
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host not in allowed_hosts:
        return f"response_url host {host!r} is not Slack's ({', '.join(sorted(allowed_hosts))})"
    return None


# ------------------------------------------------------------------ the request -------

def signature_problem(verifier: SignatureVerifier, body: bytes, timestamp: str | None,
                      signature: str | None, now: float) -> str | None:
    """Why the request is not Slack's (None: it is)."""
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return "X-Slack-Request-Timestamp is not a Unix time"
    if abs(now - sent_at) > MAX_CLOCK_SKEW_S:
        return (f"stale request: X-Slack-Request-Timestamp is {int(abs(now - sent_at))} s away "
                f"from this server's clock (more than {MAX_CLOCK_SKEW_S} s: a possible replay)")
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        return "bad signature: X-Slack-Signature does not match the body and the signing secret"
    return None


def parse_interaction(body: bytes) -> Interaction:
    """The click in a signed ``block_actions`` request; InteractionError names the field."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, IndexError):
        raise InteractionError("payload: the form field 'payload' must hold a JSON object") from None
    if not isinstance(payload, dict):
        raise InteractionError("payload: must be a JSON object")
    if payload.get("type") != "block_actions":
        raise InteractionError(f"payload.type: {str(payload.get('type'))[:40]!r} is not handled "
                               "here (only block_actions: the runbook's buttons)")
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    if not isinstance(action, dict) or action.get("action_id") not in _ACTS:
        raise InteractionError(f"payload.actions[0].action_id: must be one of {sorted(_ACTS)}")
    user = _field(payload, "user", dict)
    user_id = _field(user, "id", str, "payload.user")
    team = payload.get("team") if isinstance(payload.get("team"), dict) else {}
    # An org-wide app may get no team object: the user's own team then names the workspace.
    team_id = team.get("id") or user.get("team_id")
    if not isinstance(team_id, str) or not team_id:
        raise InteractionError("payload.team.id: required")
    response_url = _field(payload, "response_url", str)
    try:
        value = json.loads(action.get("value") or "")
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
            isinstance(value.get(k), str) and value[k] for k in ("wid", "gate")):
        raise InteractionError('payload.actions[0].value: must be the JSON {"wid", "gate", '
                               '"digest"} the runbook put on the button')
    digest = value.get("digest")
    message = payload.get("message")
    return Interaction(act=_ACTS[action["action_id"]], workflow_id=value["wid"],
                       gate=value["gate"], digest=digest if isinstance(digest, str) else None,
                       user_id=user_id, team_id=team_id, response_url=response_url,
                       message=message if isinstance(message, dict) else None)


def _field(obj: dict, name: str, kind: type, where: str = "payload") -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or not value:
        raise InteractionError(f"{where}.{name}: required")
    return value


def action_request(click: Interaction, identity: str) -> ActionRequest:
    if click.act == "approve":
        return ActionRequest(act="approve", workflow_id=click.workflow_id, gate=click.gate,
                             plan_digest=click.digest)
    return ActionRequest(act="reject", workflow_id=click.workflow_id, gate=click.gate,
                         reason=f"rejected from Slack by {identity}")


# ------------------------------------------------------------------ the replies -------

def mrkdwn_escape(text: str) -> str:
    # Slack's three control characters (https://api.slack.com/reference/surfaces/formatting).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def refusal_message(reason: str) -> dict[str, Any]:
    """Only the clicker sees it; the original message (and its buttons) stays."""
    return {"text": mrkdwn_escape(f"Refused: {reason}")[:3000], "response_type": "ephemeral",
            "replace_original": False}


def outcome_text(click: Interaction, identity: str, ack: dict[str, Any]) -> str:
    if click.act == "reject":
        return f"Rejected by {identity} (gate {click.gate})"
    text = f"Approved by {identity}: {ack.get('approvals')}/{ack.get('required')} approvals"
    if ack.get("gate_status") not in OPEN_GATE_STATUSES:
        return text + f" (gate {click.gate} is {str(ack.get('gate_status')).lower()})"
    return text


def outcome_message(click: Interaction, text: str, keep_buttons: bool) -> dict[str, Any]:
    """The original message for everyone, with the outcome at its end; the buttons stay
    while the gate still takes approvals (a second approver may be needed)."""
    note = {"type": "context", "block_id": OUTCOME_BLOCK_ID,
            "elements": [{"type": "mrkdwn", "text": mrkdwn_escape(text)[:3000]}]}
    original = (click.message or {}).get("blocks")
    if not isinstance(original, list) or not original:
        return {"text": mrkdwn_escape(text), "replace_original": True}
    blocks = [b for b in original if isinstance(b, dict)
              and b.get("block_id") != OUTCOME_BLOCK_ID
              and (keep_buttons or b.get("type") != "actions")]
    return {"text": mrkdwn_escape(text), "blocks": blocks[:49] + [note],
            "replace_original": True}


# ------------------------------------------------------------------ the router --------

class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


def slack_router(settings: ServiceSettings, sender: ActionSender, *,
                 response_url_hosts: Collection[str] = SLACK_RESPONSE_HOSTS,
                 now: Callable[[], float] = time.time) -> APIRouter:
    """``POST /slack/interactions``. Reads the signing secret and the users file now
    (ConfigError naming the variable and the file when either is unusable).
    ``response_url_hosts``: hosts a reply may go to (tests name their loopback receiver)."""
    verifier = SignatureVerifier(read_signing_secret(settings.slack_signing_secret_file),
                                 clock=_Clock(now))
    users = read_slack_users(settings.slack_users_file)
    allowed_hosts = frozenset(h.lower() for h in response_url_hosts)
    # slack_sdk logs the webhook URL at DEBUG; a response_url is a credential, so its
    # client logs through a logger that never goes below INFO.
    webhook_log = logging.getLogger("approval.slack.response_url")
    webhook_log.setLevel(max(webhook_log.level, logging.INFO))

    async def reply(click: Interaction, message: dict[str, Any]) -> None:
        problem = response_url_problem(click.response_url, allowed_hosts)
        if problem:
            log.warning("slack: not replying to %s's click on %s/%s: %s", click.user_id,
                        click.workflow_id, click.gate, problem)
            return
        client = AsyncWebhookClient(click.response_url, timeout=RESPONSE_TIMEOUT_S,
                                    logger=webhook_log)
        try:
            response = await client.send_dict(message)
        except Exception as err:  # noqa: BLE001 - a lost reply must not hide the outcome in logs
            log.warning("slack: reply to %s failed: %s", url_host(click.response_url),
                        type(err).__name__)
            return
        if response.status_code != 200:
            log.warning("slack: reply to %s answered HTTP %s: %s", url_host(click.response_url),
                        response.status_code, str(response.body)[:200])

    async def carry_out(click: Interaction, person: Person, req: ActionRequest) -> None:
        try:
            ack = await sender.send(person, req, via="slack")
        except ActionRefused as err:
            log.info("slack: %s by %s on %s/%s refused (%s): %s", req.act, person.identity,
                     req.workflow_id, req.gate, err.status_code, err.reason)
            return await reply(click, refusal_message(err.reason))
        except Exception as err:  # noqa: BLE001 - the clicker must learn it did not happen
            log.exception("slack: %s by %s on %s/%s failed", req.act, person.identity,
                          req.workflow_id, req.gate)
            return await reply(click, refusal_message(
                f"the approval service could not reach the run ({type(err).__name__}); "
                "try again, or use the runbook CLI"))
        log.info("slack: %s by %s on %s/%s accepted", req.act, person.identity,
                 req.workflow_id, req.gate)
        keep = click.act == "approve" and ack.get("gate_status") in OPEN_GATE_STATUSES
        await reply(click, outcome_message(click, outcome_text(click, person.identity, ack), keep))

    router = APIRouter()

    @router.post(INTERACTIONS_PATH, include_in_schema=False)
    async def interactions(request: Request, background: BackgroundTasks) -> Response:
        body = await _raw_body(request)
        problem = signature_problem(verifier, body, request.headers.get("x-slack-request-timestamp"),
                                    request.headers.get("x-slack-signature"), now())
        if problem:
            log.warning("slack: request refused: %s", problem)
            raise HTTPException(status_code=401, detail=problem)
        try:
            click = parse_interaction(body)
        except InteractionError as err:
            raise HTTPException(status_code=400, detail=str(err)) from None
        identity = users.get(click.user_id)
        if identity is None:
            log.info("slack: %s by unmapped Slack user %s on %s/%s refused", click.act,
                     click.user_id, click.workflow_id, click.gate)
            background.add_task(reply, click, refusal_message(
                f"your Slack user {click.user_id} is not mapped to an approver identity; "
                "ask the runbook admins"))
            return Response(status_code=200)
        try:
            req = action_request(click, identity)
        except ValidationError as err:
            background.add_task(reply, click, refusal_message(
                f"the button's value is not usable: {describe_validation_error(err)}"))
            return Response(status_code=200)
        person = Person(identity=identity, idp=f"slack:{click.team_id}")
        background.add_task(carry_out, click, person, req)
        return Response(status_code=200)

    return router


async def _raw_body(request: Request) -> bytes:
    """The body exactly as sent (the signature covers these bytes), at most MAX_BODY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(status_code=413, detail=f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
