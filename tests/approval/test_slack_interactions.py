"""Slack's Approve/Reject buttons through the approval service's real FastAPI app.

Requests are signed as Slack signs them (slack_sdk's SignatureVerifier with the test's
signing secret) and carry the block_actions payload Slack sends for a click on the
message ``slack_message`` builds. The sender records what it is asked to send (the real
path to a workflow is the lead's test); replies go to a local receiver standing in for
``response_url``, which checks them against Slack's rules for response_url messages
(tests/activities/notify_receivers.py) before answering.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from activities.notify_formats import slack_message
from approval.actions import ActionRefused, ActionRequest, ActionSender, Person
from approval.config import ENV_SLACK_SECRET_FILE, ENV_SLACK_USERS_FILE, ConfigError, ServiceSettings
from approval.oidc import TokenVerifier
from approval.service import create_app
from approval.slack_interactions import (read_signing_secret, read_slack_users,
                                         response_url_problem, slack_router)
from runbook.notifications import ChannelNotice
from tests.activities.notify_receivers import Receiver, response_url_problems

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the test app's signing secret
RUN, GATE, DIGEST = "remediation-1278-abc", "phase-1", "0123456789abcdef"
RESPONSE_PATH = "/actions/T0TEAM/1234567890/R3spOnSeT0k3n"
NOW = datetime(2025, 1, 14, 15, 0, tzinfo=timezone.utc)


class RecordingSender(ActionSender):
    """Records each send; answers as the run would (``answer``) or refuses (ActionRefused)."""

    def __init__(self) -> None:
        super().__init__(client=None, signer=None)  # type: ignore[arg-type] - never used
        self.calls: list[tuple[Person, ActionRequest, str]] = []
        self.answer: dict[str, Any] | ActionRefused = {
            "gate": GATE, "accepted": True, "approvals": 1, "required": 2, "gate_status": "PENDING"}

    async def send(self, person: Person, req: ActionRequest, via: str) -> dict[str, Any]:
        self.calls.append((person, req, via))
        if isinstance(self.answer, ActionRefused):
            raise self.answer
        return self.answer | {"identity": person.identity}


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def rx(receiver: Receiver) -> Receiver:
    receiver.reset()
    return receiver


@pytest.fixture
def settings(tmp_path: Path) -> ServiceSettings:
    secret_file = tmp_path / "slack-signing-secret"
    secret_file.write_text(SECRET + "\n")
    users_file = tmp_path / "slack-users.json"
    users_file.write_text(json.dumps({"users": {"U0ALICE": " Alice@Example.COM"}}))
    return ServiceSettings(signing_key_file=tmp_path / "unused.pem", signing_kid="test",
                           slack_signing_secret_file=secret_file, slack_users_file=users_file)


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
async def client(settings: ServiceSettings, sender: RecordingSender):
    router = slack_router(settings, sender, response_url_hosts={"127.0.0.1"})
    app = create_app(settings, sender, TokenVerifier([]), extra_routers=[router])
    # ASGITransport returns once the app is done, background tasks included: the reply
    # to response_url has been sent (or given up) when a post returns.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://approval.test") as c:
        yield c


def approval_message() -> dict[str, Any]:
    notice = ChannelNotice(run_id=RUN, incident_id="1278", level="approval", recipient="db-oncall",
                           channel="slack", subject="phase-1 waits for approval", body="",
                           gate=GATE, phase=1, deadline=NOW + timedelta(minutes=30),
                           plan_digest=DIGEST, changes=["svc-a max_instances: 10 -> 20"],
                           buttons=True)
    return slack_message(notice, NOW)


def click(rx: Receiver, action_id: str = "runbook_approve", user: str = "U0ALICE",
          response_url: str | None = None) -> dict[str, Any]:
    """The block_actions payload Slack sends when ``user`` clicks a button of the message."""
    message = approval_message()
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    [button] = [e for e in actions["elements"] if e["action_id"] == action_id]
    return {
        "type": "block_actions",
        "user": {"id": user, "username": "someone", "team_id": "T0TEAM"},
        "api_app_id": "A0APP", "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": "1736866800.000100",
                      "channel_id": "C0OPS", "is_ephemeral": False},
        "trigger_id": "123.456.abc", "team": {"id": "T0TEAM", "domain": "example"},
        "channel": {"id": "C0OPS", "name": "ops"},
        "message": {"type": "message", "ts": "1736866800.000100", **message},
        "response_url": response_url or f"{rx.url}{RESPONSE_PATH}",
        "actions": [{**button, "block_id": actions["block_id"], "action_ts": "1736866805.1"}],
    }


def signed(payload: dict[str, Any], *, secret: str = SECRET,
           at: float | None = None) -> tuple[bytes, dict[str, str]]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time() if at is None else at))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return body, {"Content-Type": "application/x-www-form-urlencoded",
                  "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


async def post(client: httpx.AsyncClient, payload: dict[str, Any], **kw) -> httpx.Response:
    body, headers = signed(payload, **kw)
    return await client.post("/slack/interactions", content=body, headers=headers)


def the_reply(rx: Receiver) -> dict[str, Any]:
    [(path, body)] = rx.received
    assert path == RESPONSE_PATH
    assert response_url_problems(body) == []
    return body


# -- clicks the run takes ------------------------------------------------------------------

async def test_approve_sends_the_mapped_identity_and_updates_the_message(client, sender, rx):
    response = await post(client, click(rx))
    assert response.status_code == 200
    [(person, req, via)] = sender.calls
    assert person == Person(identity="alice@example.com", idp="slack:T0TEAM")
    assert (req.act, req.workflow_id, req.gate, req.plan_digest) == ("approve", RUN, GATE, DIGEST)
    assert via == "slack"
    reply = the_reply(rx)
    assert reply["replace_original"] is True and reply.get("response_type") != "ephemeral"
    assert reply["text"] == "Approved by alice@example.com: 1/2 approvals"
    # One more approval is needed: the buttons stay, the outcome is the last block.
    kinds = [b["type"] for b in reply["blocks"]]
    assert "actions" in kinds and reply["blocks"][-1]["type"] == "context"
    assert reply["blocks"][-1]["elements"][0]["text"] == reply["text"]


async def test_the_last_approval_removes_the_buttons(client, sender, rx):
    sender.answer = {"gate": GATE, "accepted": True, "approvals": 2, "required": 2,
                     "gate_status": "APPROVED"}
    assert (await post(client, click(rx))).status_code == 200
    reply = the_reply(rx)
    assert reply["text"] == "Approved by alice@example.com: 2/2 approvals (gate phase-1 is approved)"
    assert "actions" not in [b["type"] for b in reply["blocks"]]


async def test_reject_sends_a_rejection_with_the_reason(client, sender, rx):
    sender.answer = {"gate": GATE, "accepted": True, "approvals": 0, "required": 2,
                     "gate_status": "REJECTED"}
    assert (await post(client, click(rx, "runbook_reject"))).status_code == 200
    [(person, req, via)] = sender.calls
    assert (req.act, req.workflow_id, req.gate, req.plan_digest) == ("reject", RUN, GATE, None)
    assert req.reason == "rejected from Slack by alice@example.com"
    assert (person.identity, via) == ("alice@example.com", "slack")
    reply = the_reply(rx)
    assert reply["text"] == "Rejected by alice@example.com (gate phase-1)"
    assert reply["replace_original"] is True
    assert "actions" not in [b["type"] for b in reply["blocks"]]


# -- clicks refused ---------------------------------------------------------------------------

async def test_a_bad_signature_is_401_and_nothing_is_sent(client, sender, rx):
    response = await post(client, click(rx), secret="not-the-apps-secret")
    assert response.status_code == 401
    assert response.json()["detail"].startswith("bad signature")
    body, headers = signed(click(rx))
    tampered = body.replace(b"runbook_approve", b"runbook_reject")
    response = await client.post("/slack/interactions", content=tampered, headers=headers)
    assert response.status_code == 401
    unsigned = await client.post("/slack/interactions", content=body,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 401 and "missing X-Slack" in unsigned.json()["detail"]
    assert sender.calls == [] and rx.received == []


async def test_a_stale_timestamp_is_401_and_nothing_is_sent(client, sender, rx):
    response = await post(client, click(rx), at=time.time() - 600)
    assert response.status_code == 401
    assert response.json()["detail"].startswith("stale request")
    assert sender.calls == [] and rx.received == []


async def test_an_unmapped_user_gets_an_ephemeral_refusal_and_nothing_is_sent(client, sender, rx):
    response = await post(client, click(rx, user="U0MALLORY"))
    assert response.status_code == 200
    assert sender.calls == []
    reply = the_reply(rx)
    assert (reply["response_type"], reply["replace_original"]) == ("ephemeral", False)
    assert reply["text"] == ("Refused: your Slack user U0MALLORY is not mapped to an approver "
                             "identity; ask the runbook admins")


async def test_a_refusal_by_the_run_is_an_ephemeral_reply_with_the_reason(client, sender, rx):
    sender.answer = ActionRefused("alice@example.com already approved gate phase-1 <twice>", 409)
    assert (await post(client, click(rx))).status_code == 200
    assert len(sender.calls) == 1
    reply = the_reply(rx)
    assert (reply["response_type"], reply["replace_original"]) == ("ephemeral", False)
    assert reply["text"] == ("Refused: alice@example.com already approved gate phase-1 "
                             "&lt;twice&gt;")
    assert "blocks" not in reply  # the original message and its buttons stay as they were


async def test_a_reply_goes_only_to_slacks_host(client, sender, rx, caplog):
    foreign = "https://hooks.example.com/actions/T0/1/s3cr3t"
    with caplog.at_level(logging.INFO):
        assert (await post(client, click(rx, response_url=foreign))).status_code == 200
    assert len(sender.calls) == 1  # Slack signed the click: the run gets it
    assert rx.received == []
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "response_url host 'hooks.example.com' is not Slack's" in logs
    assert "s3cr3t" not in logs and SECRET not in logs
    assert response_url_problem("https://hooks.slack.com/actions/T0/1/x", {"hooks.slack.com"}) is None
    assert "http:// is allowed only to a loopback host" in response_url_problem(
        "http://hooks.slack.com/actions/T0/1/x", {"hooks.slack.com"})
    assert "is not Slack's" in response_url_problem(f"{rx.url}/actions/x", {"hooks.slack.com"})


async def test_other_interactions_are_400(client, sender, rx):
    payload = click(rx) | {"type": "view_submission"}
    response = await post(client, payload)
    assert response.status_code == 400 and response.json()["detail"].startswith("payload.type:")
    payload = click(rx)
    payload["actions"][0]["action_id"] = "someone_elses_button"
    response = await post(client, payload)
    assert response.status_code == 400 and "action_id" in response.json()["detail"]
    assert sender.calls == [] and rx.received == []


async def test_nothing_secret_reaches_the_logs(client, sender, rx, caplog):
    with caplog.at_level(logging.DEBUG):
        await post(client, click(rx))
        await post(client, click(rx), secret="wrong")
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in logs and "R3spOnSeT0k3n" not in logs
    assert "approve by alice@example.com on remediation-1278-abc/phase-1 accepted" in logs


# -- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("content, expected", [
    ('{"users": {"U0ALICE": ""}}', "users.U0ALICE: must not be empty or blank"),
    ('{"users": {"alice": "alice"}}', "users.'alice': not a Slack user id"),
    ('{"users": {"U0ALICE": 7}}', "users.U0ALICE: must be a string"),
    ('{"U0ALICE": "alice"}', 'must be an object with only "users"'),
    ("{not json", "not JSON"),
])
def test_a_bad_users_file_names_the_file_and_the_key(tmp_path, content, expected):
    path = tmp_path / "users.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        read_slack_users(path)
    assert str(err.value).startswith(f"{ENV_SLACK_USERS_FILE} ({path}): ")
    assert expected in str(err.value)


def test_the_signing_secret_file_must_exist_and_is_never_echoed(tmp_path):
    with pytest.raises(ConfigError, match=f"{ENV_SLACK_SECRET_FILE}: not set"):
        read_signing_secret(None)
    with pytest.raises(ConfigError, match="cannot read"):
        read_signing_secret(tmp_path / "missing")
    path = tmp_path / "secret"
    path.write_text(f"{SECRET}\n\x07")
    with pytest.raises(ConfigError) as err:
        read_signing_secret(path)
    assert SECRET not in str(err.value)
    with pytest.raises(ConfigError, match=f"{ENV_SLACK_USERS_FILE}: not set"):
        read_slack_users(None)
