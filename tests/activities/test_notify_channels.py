"""Per-channel notifications: configuration, message formats, and the ``notify_channel``
activity against a local receiver playing Slack and PagerDuty (payloads checked against
their documented rules) and the simulator's Secret Manager for secret references."""

from __future__ import annotations

import json
import logging
import socket
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import notify_channel as notify_channel_module
from activities.notify_channel import ChannelNotifyActivities, retry_after
from activities.notify_channels import (ENV_NOTIFY_CHANNELS_FILE, NotifyChannels,
                                        NotifyChannelsError)
from activities.notify_formats import (approval_block_id, changes_text, dedup_key,
                                       pagerduty_event, slack_message, webhook_message)
from runbook.notifications import ChannelNotice

from .notify_receivers import Receiver, blocks_problems, pagerduty_problems, slack_problems

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
SLACK_TOKEN = "XoXsEcReTtOkEn42"  # the part of a webhook URL that is the credential
NOW = datetime(2025, 1, 14, 15, 0, tzinfo=timezone.utc)


def notice(**kw) -> ChannelNotice:
    base = dict(run_id="remediation-1278-abc", incident_id="1278", level="escalation",
                recipient="db-oncall", channel="slack", subject="phase-1 approval pending",
                body="Connector & SQL changes wait for <approval>.", gate="phase-1", phase=1,
                deadline=NOW + timedelta(minutes=14),
                approve_command="runbook approve remediation-1278-abc --gate phase-1 "
                                "--approver YOU --digest d1g3st")
    return ChannelNotice(**{**base, **kw})


def channels(rx: Receiver, **extra) -> NotifyChannels:
    return NotifyChannels.from_mapping({"channels": {
        "slack": {"kind": "slack", "webhook_url": f"{rx.url}/services/T0/B0/{SLACK_TOKEN}"},
        "pager": {"kind": "pagerduty", "routing_key": ROUTING_KEY,
                  "events_url": f"{rx.url}/v2/enqueue"},
        "hook": {"kind": "webhook", "url": f"{rx.url}/hook"}, **extra}}, "test")


async def send(chs: NotifyChannels, n: ChannelNotice, clients=None):
    return await ActivityEnvironment().run(ChannelNotifyActivities(chs, clients).notify_channel, n)


async def failure(chs: NotifyChannels, n: ChannelNotice, clients=None) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        await send(chs, n, clients)
    return err.value


# -- formats -------------------------------------------------------------------------

def test_slack_message_shows_the_notice_within_block_kit_limits():
    msg = slack_message(notice(), NOW)
    assert slack_problems(msg) == []
    assert msg["text"].startswith("Escalation: phase-1 approval pending (incident 1278)")
    header, facts, body, approve, context = msg["blocks"]
    assert header["type"] == "header" and "phase-1 approval pending" in header["text"]["text"]
    shown = "\n".join(f["text"] for f in facts["fields"])
    for expected in ("*Incident*\n1278", "*Level*\nEscalation", "*Gate*\n`phase-1`",
                     "*Phase*\n1", "*Recipient*\ndb-oncall", "2025-01-14T15:14:00+00:00",
                     "<!date^1736867640^{date_short_pretty} at {time}|Tue 14 Jan 15:14 UTC>",
                     "(in 14 min)"):
        assert expected in shown, expected
    assert body["text"]["text"] == "Connector &amp; SQL changes wait for &lt;approval&gt;."
    assert approve["text"]["text"].endswith("```runbook approve remediation-1278-abc --gate "
                                            "phase-1 --approver YOU --digest d1g3st```")
    assert context["type"] == "context"


def test_slack_message_clips_long_text_and_says_when_the_gate_was_decided():
    msg = slack_message(notice(subject="s" * 400, body="b" * 5000), NOW)
    assert slack_problems(msg) == []
    assert len(msg["blocks"][0]["text"]["text"]) == 150
    assert len(msg["blocks"][2]["text"]["text"]) == 3000
    resolved = slack_message(notice(level="resolve", approve_command=None), NOW)
    assert slack_problems(resolved) == []
    texts = json.dumps(resolved["blocks"])
    assert "gate `phase-1` was decided" in texts and "Approve with" not in texts
    assert "Deadline" not in texts


def test_pagerduty_events_trigger_resolve_and_skip():
    trigger = pagerduty_event(notice(level="breach", dedup_key=None), ROUTING_KEY)
    assert pagerduty_problems(trigger) == []
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "remediation-1278-abc/phase-1"
    p = trigger["payload"]
    assert (p["severity"], p["source"], p["component"], p["group"], p["class"]) == (
        "critical", "remediation-1278-abc", "phase-1", "incident-1278", "deadline breach")
    assert p["custom_details"]["approve_command"].startswith("runbook approve")
    assert p["custom_details"]["deadline"] == "2025-01-14T15:14:00+00:00"
    assert pagerduty_event(notice(), ROUTING_KEY)["payload"]["severity"] == "warning"
    assert len(pagerduty_event(notice(subject="x" * 2000), ROUTING_KEY)["payload"]["summary"]) == 1024
    assert pagerduty_event(notice(level="resolve", gate=None), ROUTING_KEY) == {
        "routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "remediation-1278-abc/run"}
    assert pagerduty_event(notice(level="reminder"), ROUTING_KEY) is None
    assert pagerduty_event(notice(level="outcome"), ROUTING_KEY) is None
    long_key = dedup_key(notice(run_id="r" * 300))
    assert len(long_key) <= 255 and long_key == dedup_key(notice(run_id="r" * 300))
    assert dedup_key(notice(dedup_key="given")) == "given"


def test_webhook_message_is_the_notice_tagged():
    msg = webhook_message(notice())
    assert msg["kind"] == "runbook.notification"
    assert ChannelNotice.model_validate({k: v for k, v in msg.items() if k != "kind"}) == notice()


def approval(**kw) -> ChannelNotice:
    return notice(**{"level": "approval", "subject": "phase-1 waits for approval",
                     "plan_digest": "0123456789abcdef",
                     "changes": ["run/svc-a max_instances: 10 -> 20",
                                 "sql/db-1 tier: db-custom-2 -> <db-custom-4> & more"],
                     "buttons": True, **kw})


def actions_of(msg: dict) -> list[dict]:
    return [b for b in msg["blocks"] if b["type"] == "actions"]


def test_an_approval_lists_the_changes_and_carries_approve_and_reject_buttons():
    msg = slack_message(approval(), NOW)
    assert slack_problems(msg) == []
    assert msg["text"] == "Approval needed: phase-1 waits for approval (incident 1278)"
    assert msg["blocks"][0]["text"]["text"].startswith(":raised_hand: Approval needed:")
    facts = "\n".join(f["text"] for f in msg["blocks"][1]["fields"])
    assert "*Plan digest*\n`0123456789abcdef`" in facts and "*Gate*\n`phase-1`" in facts
    [changes] = [b["text"]["text"] for b in msg["blocks"]
                 if b.get("text", {}).get("text", "").startswith("*What will change*")]
    assert changes == ("*What will change*\n\u2022 run/svc-a max_instances: 10 -&gt; 20\n"
                       "\u2022 sql/db-1 tier: db-custom-2 -&gt; &lt;db-custom-4&gt; &amp; more")
    [actions] = actions_of(msg)
    approve, reject = actions["elements"]
    assert (approve["action_id"], approve["style"], approve["text"]["text"]) == (
        "runbook_approve", "primary", "Approve")
    assert (reject["action_id"], reject["style"], reject["text"]["text"]) == (
        "runbook_reject", "danger", "Reject")
    assert "confirm" not in approve
    assert reject["confirm"]["style"] == "danger" and reject["confirm"]["confirm"]["text"] == "Reject"
    for button in (approve, reject):
        assert json.loads(button["value"]) == {"wid": "remediation-1278-abc", "gate": "phase-1",
                                               "digest": "0123456789abcdef"}
    # Stable per run and gate, distinct across gates.
    assert actions["block_id"] == approval_block_id(approval(subject="again")) != \
        approval_block_id(approval(gate="phase-2"))
    assert len(approval_block_id(approval(run_id="r" * 300))) <= 255
    # The CLI route stays next to the buttons.
    assert "```runbook approve remediation-1278-abc" in json.dumps(msg["blocks"])


def test_an_approval_without_buttons_or_digest_shows_no_buttons():
    assert actions_of(slack_message(approval(buttons=False), NOW)) == []
    msg = slack_message(approval(plan_digest=None), NOW)
    assert slack_problems(msg) == [] and actions_of(msg) == []
    assert "Buttons unavailable for this gate" in json.dumps(msg)
    # Other levels are unchanged by the new fields.
    assert actions_of(slack_message(notice(buttons=True, plan_digest="d"), NOW)) == []


def test_many_or_long_changes_are_clipped_to_the_section_limit():
    msg = slack_message(approval(changes=[f"svc-{i} env.X: {'a' * 400} -> b" for i in range(60)]),
                        NOW)
    assert slack_problems(msg) == []
    [section] = [b for b in msg["blocks"] if "What will change" in b.get("text", {}).get("text", "")]
    text = section["text"]["text"]
    assert len(text) <= 3000 and text.endswith(" more")
    shown = text.count("\u2022 ")
    assert text.endswith(f"\u2026 and {60 - shown} more") and 0 < shown < 60
    assert changes_text(["x"] * 3) == "*What will change*\n\u2022 x\n\u2022 x\n\u2022 x"
    for limit in range(40, 120):  # the tail always fits (the heading and a tail take 32)
        assert len(changes_text(["row"] * 40, limit)) <= limit


def test_an_approval_pages_nobody_and_the_webhook_gets_the_new_fields():
    assert pagerduty_event(approval(), ROUTING_KEY) is None
    msg = webhook_message(approval())
    assert (msg["level"], msg["plan_digest"], msg["buttons"]) == ("approval", "0123456789abcdef", True)
    assert msg["changes"] == approval().changes


def test_the_receiver_refuses_bad_buttons():
    [good] = actions_of(slack_message(approval(), NOW))
    assert blocks_problems([good]) == []

    def with_button(**change) -> list[dict]:
        block = json.loads(json.dumps(good))
        block["elements"][0].update(change)
        return [block]

    assert blocks_problems(with_button(value="v" * 2001))
    assert blocks_problems(with_button(style="warning"))
    assert blocks_problems(with_button(action_id="runbook_reject"))  # duplicate in the block
    assert blocks_problems(with_button(text={"type": "mrkdwn", "text": "Approve"}))
    assert blocks_problems(with_button(text={"type": "plain_text", "text": "a" * 76}))
    assert blocks_problems(with_button(confirm={**good["elements"][1]["confirm"],
                                                "text": {"type": "mrkdwn", "text": "t" * 301}}))
    assert blocks_problems([{**good, "elements": good["elements"] * 13}])  # 26 elements
    assert blocks_problems([{"type": "image", "image_url": "https://x/y.png"}])  # slack_sdk


def test_retry_after_reads_seconds_and_dates_capped():
    assert retry_after("7", NOW) == timedelta(seconds=7)
    assert retry_after("Tue, 14 Jan 2025 15:00:30 GMT", NOW) == timedelta(seconds=30)
    assert retry_after("86400", NOW) == timedelta(seconds=900)
    assert retry_after(None, NOW) is None and retry_after("soon", NOW) is None
    assert retry_after("0", NOW) is None


# -- configuration ---------------------------------------------------------------------

def test_without_a_file_only_the_log_channel_exists():
    chs = NotifyChannels.from_env({})
    assert chs.names() == ["log"] and chs.get("log").kind == "log"


@pytest.mark.parametrize("channel, expected", [
    ({"kind": "slack"},
     "channels.team: give exactly one of 'webhook_url' (the value) or 'webhook_url_secret'"),
    ({"kind": "slack", "webhook_url": "https://a", "webhook_url_secret":
      "projects/p/secrets/s/versions/1"}, "channels.team: give exactly one of"),
    ({"kind": "pagerduty", "routing_key": "short"},
     "channels.team.routing_key: a PagerDuty Events API v2 routing key is 32"),
    ({"kind": "pagerduty", "routing_key_secret": "projects/p/secrets/s"},
     "channels.team.routing_key_secret: not a Secret Manager version name"),
    ({"kind": "webhook", "url": "ftp://x"},
     "channels.team.url: scheme 'ftp' is not allowed: use https://"),
    ({"kind": "webhook", "url": "file:///etc/passwd"},
     "channels.team.url: scheme 'file' is not allowed"),
    ({"kind": "webhook", "url": "http://169.254.169.254/computeMetadata/v1/"},
     "channels.team.url: the host is a cloud instance metadata address"),
    ({"kind": "webhook", "url": "https://metadata.google.internal/x"},
     "channels.team.url: the host names a cloud instance metadata server"),
    ({"kind": "webhook", "url": "https://[fe80::1]/x"}, "channels.team.url: the host is link-local"),
    ({"kind": "webhook", "url": "http://hooks.example.com/x"},
     "channels.team.url: http:// is allowed only to a loopback host"),
    ({"kind": "webhook"}, "channels.team: give exactly one of 'url' (the value) or 'url_secret'"),
    ({"kind": "slack", "webhook_url": "https://u:p@hooks.slack.com/services/x"},
     "channels.team.webhook_url: must not carry credentials"),
    ({"kind": "pagerduty", "routing_key": "R0UT1NGKEY0123456789abcdefABCDEF",
      "events_url": "http://169.254.169.254/"}, "channels.team.events_url: the host is a cloud"),
    ({"kind": "pagerduty", "routing_key": "R0UT1NGKEY0123456789abcdefABCDEF"} | {"extra": {}},
     "channels.team.extra: Extra inputs are not permitted"),
    ({"kind": "log", "url": "https://x"}, "channels.team.url: Extra inputs are not permitted"),
    ({"kind": "webhook", "url": "https://x", "headers_secret": "h"},
     "channels.team.headers_secret: Extra inputs are not permitted"),
    ({"kind": "email"}, "channels.team.kind: must be one of"),
])
def test_config_errors_name_the_file_the_channel_and_the_field(tmp_path, channel, expected):
    path = tmp_path / "channels.json"
    path.write_text(json.dumps({"channels": {"team": channel}}))
    with pytest.raises(NotifyChannelsError) as err:
        NotifyChannels.from_env({ENV_NOTIFY_CHANNELS_FILE: str(path)})
    assert str(err.value).startswith(f"{ENV_NOTIFY_CHANNELS_FILE}={path}: ")
    assert expected in str(err.value)


def test_config_refuses_unknown_top_level_keys(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"channels": {}, "defaults": {"url": "https://x"}}))
    with pytest.raises(NotifyChannelsError, match="nothing else at the top level"):
        NotifyChannels.from_file(path)


def test_config_never_echoes_a_value_and_keeps_log_built_in(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"channels": {"team": {
        "kind": "slack", "webhook_url_secret": f"https://hooks.slack.com/services/{SLACK_TOKEN}"}}}))
    with pytest.raises(NotifyChannelsError) as err:
        NotifyChannels.from_file(path)
    assert SLACK_TOKEN not in str(err.value)
    path.write_text(json.dumps({"channels": {"log": {"kind": "webhook", "url": "https://x"}}}))
    with pytest.raises(NotifyChannelsError, match="channels.log: the 'log' channel is built in"):
        NotifyChannels.from_file(path)
    path.write_text("{not json")
    with pytest.raises(NotifyChannelsError, match="c.json: not JSON"):
        NotifyChannels.from_file(path)
    with pytest.raises(NotifyChannelsError, match="missing.json: cannot read"):
        NotifyChannels.from_file(tmp_path / "missing.json")


# -- the activity against the local receiver ---------------------------------------------

async def test_slack_delivery_carries_block_kit(rx: Receiver):
    out = await send(channels(rx), notice())
    assert (out.channel, out.kind, out.sent, out.detail) == ("slack", "slack", True, "HTTP 200")
    [(path, body)] = rx.received
    assert path == f"/services/T0/B0/{SLACK_TOKEN}" and slack_problems(body) == []
    assert body["blocks"][0]["type"] == "header" and "```runbook approve" in json.dumps(body)


async def test_an_approval_with_buttons_reaches_slack(rx: Receiver):
    out = await send(channels(rx), approval())
    assert (out.kind, out.sent, out.detail) == ("slack", True, "HTTP 200")
    [(path, body)] = rx.received
    assert path == f"/services/T0/B0/{SLACK_TOKEN}" and slack_problems(body) == []
    [actions] = actions_of(body)
    assert [e["action_id"] for e in actions["elements"]] == ["runbook_approve", "runbook_reject"]
    assert json.loads(actions["elements"][0]["value"])["digest"] == "0123456789abcdef"


async def test_pagerduty_skips_an_approval(rx: Receiver):
    out = await send(channels(rx), approval(channel="pager"))
    assert (out.sent, out.detail) == (False, "pagerduty pages only on escalation and breach")
    assert rx.received == []


async def test_pagerduty_trigger_then_resolve_share_the_dedup_key(rx: Receiver):
    chs = channels(rx)
    opened = await send(chs, notice(channel="pager", level="escalation"))
    closed = await send(chs, notice(channel="pager", level="resolve"))
    assert opened.detail == closed.detail == "dedup_key=remediation-1278-abc/phase-1"
    (p1, trigger), (p2, resolve) = rx.received
    assert p1 == p2 == "/v2/enqueue"
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] and trigger["routing_key"] == ROUTING_KEY


async def test_pagerduty_pages_nobody_for_a_reminder(rx: Receiver):
    out = await send(channels(rx), notice(channel="pager", level="reminder"))
    assert (out.sent, out.detail) == (False, "pagerduty pages only on escalation and breach")
    assert rx.received == []


async def test_a_pagerduty_400_is_rejected_for_good_with_the_key_scrubbed(rx: Receiver):
    # Our events pass the receiver's checks, so play PagerDuty's 400 as documented.
    rx.script.append((400, {}, json.dumps({
        "status": "invalid event", "message": "Event object is invalid",
        "errors": [f"routing_key {ROUTING_KEY} is not an Events API v2 integration"]})))
    err = await failure(channels(rx), notice(channel="pager"))
    assert (err.type, err.non_retryable) == ("ChannelRejected", True)
    assert err.message.startswith("pagerduty:pager: HTTP 400:") and "invalid event" in str(err)
    assert ROUTING_KEY not in str(err) and "routing_key *** is not" in str(err)


def test_the_receivers_refuse_what_the_vendors_refuse():
    good = slack_message(notice(), NOW)
    assert slack_problems({"blocks": good["blocks"]}) == ["text: required non-empty string"]
    long_header = {**good, "blocks": [{"type": "header", "text": {"type": "plain_text",
                                                                   "text": "h" * 151}}]}
    too_many = {**good, "blocks": [{"type": "section", "fields": [
        {"type": "mrkdwn", "text": "f"}] * 11}]}
    unknown = {**good, "blocks": [{"type": "banner"}]}
    long_id = {**good, "blocks": [{"type": "divider", "block_id": "i" * 256}]}
    for bad in (long_header, too_many, unknown, long_id):
        assert slack_problems(bad), bad
    event = pagerduty_event(notice(), ROUTING_KEY)
    assert pagerduty_problems({**event, "routing_key": ROUTING_KEY[:31]})
    assert pagerduty_problems({**event, "payload": {**event["payload"], "severity": "high"}})
    assert pagerduty_problems({**event, "payload": {**event["payload"], "summary": "s" * 1025}})
    assert pagerduty_problems({**event, "dedup_key": "d" * 256})
    assert pagerduty_problems({"routing_key": ROUTING_KEY, "event_action": "resolve"})


async def test_server_errors_are_retryable_and_honour_retry_after(rx: Receiver):
    rx.script.append((500, {}, "rollup_error"))
    err = await failure(channels(rx), notice())
    assert (err.type, err.non_retryable, err.next_retry_delay) == ("ChannelUnavailable", False, None)
    assert err.message == "slack:slack: HTTP 500: rollup_error"
    rx.script.append((429, {"Retry-After": "7"}, ""))
    err = await failure(channels(rx), notice(channel="hook"))
    assert (err.type, err.non_retryable) == ("ChannelUnavailable", False)
    assert err.next_retry_delay == timedelta(seconds=7)


async def test_client_errors_are_rejected_without_leaking_the_url(rx: Receiver):
    rx.script.append((404, {}, "no_service"))
    err = await failure(channels(rx), notice())
    assert (err.type, err.non_retryable) == ("ChannelRejected", True)
    assert err.message == "slack:slack: HTTP 404: no_service" and SLACK_TOKEN not in str(err)


async def test_unreachable_and_slow_receivers_are_unavailable(rx: Receiver, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    chs = NotifyChannels.from_mapping({"channels": {"slack": {
        "kind": "slack", "webhook_url": f"http://127.0.0.1:{closed_port}/services/{SLACK_TOKEN}"}}}, "t")
    err = await failure(chs, notice())
    assert (err.type, err.non_retryable) == ("ChannelUnavailable", False)
    assert err.message.startswith("slack:slack: ConnectError") and SLACK_TOKEN not in str(err)
    monkeypatch.setattr(notify_channel_module, "SEND_TIMEOUT", httpx.Timeout(0.2))
    rx.delay_s = 0.6
    err = await failure(channels(rx), notice(channel="hook"))
    assert (err.type, err.non_retryable) == ("ChannelUnavailable", False)
    assert "Timeout" in str(err)


async def test_unknown_channel_is_not_configured(rx: Receiver):
    err = await failure(channels(rx), notice(channel="nobody"))
    assert (err.type, err.non_retryable) == ("ChannelNotConfigured", True)
    assert "'nobody'" in str(err) and ENV_NOTIFY_CHANNELS_FILE in str(err)


async def test_log_channel_writes_the_worker_log(rx: Receiver, caplog):
    with caplog.at_level(logging.INFO):
        out = await send(channels(rx), notice(channel="log", level="reminder"))
    assert (out.kind, out.sent) == ("log", True)
    assert any("notification" in r.getMessage() and "phase-1 approval pending" in r.getMessage()
               for r in caplog.records)
