"""Where a notification may go: secret references resolved at send time through the
simulator's Secret Manager, and destinations checked after resolving their host
(runbook/urls.py), so nothing reaches a metadata server or a link-local address."""

from __future__ import annotations

import base64
import logging
import socket

from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from activities.notify_channels import NotifyChannels
from runbook.activity_io import NotificationChannel, NotifyParams

from .notify_receivers import Receiver, fake_dns, record_sends
from .test_notify_channels import SLACK_TOKEN, channels, failure, notice, send

# -- secret references through the simulator's Secret Manager ---------------------------

SECRET = "projects/123456789012/secrets/notify-slack"


def _seed_secret(sim, value: str | None, state: str = "ENABLED") -> None:
    def change(world):
        world["secretmanager"][SECRET] = {"name": SECRET, "replication": {"automatic": {}}}
        version = {"name": f"{SECRET}/versions/1", "state": state}
        if value is not None:
            version["_sim"] = {"payload": base64.b64encode(value.encode()).decode()}
        world["secretmanager"][f"{SECRET}/versions/1"] = version
    sim.edit(change)


def _secret_channels(rx: Receiver) -> NotifyChannels:
    return NotifyChannels.from_mapping({"channels": {"team": {
        "kind": "slack", "webhook_url_secret": "projects/netra-staging/secrets/notify-slack/versions/latest"}}},
        "test")


async def test_a_secret_reference_is_resolved_at_send_time_and_never_shown(rx, sim, clients, caplog):
    _seed_secret(sim, f"{rx.url}/services/T0/B0/{SLACK_TOKEN}\n")
    with caplog.at_level(logging.DEBUG):
        out = await send(_secret_channels(rx), notice(channel="team"), clients)
        rx.script.append((403, {}, f"action_prohibited for /services/T0/B0/{SLACK_TOKEN}"))
        err = await failure(_secret_channels(rx), notice(channel="team"), clients)
    assert (out.kind, out.detail) == ("slack", "HTTP 200")
    assert [path for path, _ in rx.received] == [f"/services/T0/B0/{SLACK_TOKEN}"]
    assert err.type == "ChannelRejected" and SLACK_TOKEN not in str(err)
    assert SLACK_TOKEN not in out.model_dump_json()
    assert caplog.records and SLACK_TOKEN not in caplog.text


async def test_unreadable_secrets_fail_by_kind(rx, sim, clients):
    chs = _secret_channels(rx)
    err = await failure(chs, notice(channel="team"), clients)  # no such secret
    assert (err.type, err.non_retryable) == ("ChannelSecretUnavailable", True)
    assert "HTTP 404" in str(err) and "slack:team" in str(err)
    _seed_secret(sim, "https://hooks.example/x", state="DISABLED")
    err = await failure(chs, notice(channel="team"), clients)
    assert (err.type, err.non_retryable) == ("ChannelSecretUnavailable", True)
    _seed_secret(sim, "https://hooks.example/x")
    sim.fault(kind="http", api="secretmanager", status=503, count=1)
    err = await failure(chs, notice(channel="team"), clients)
    assert (err.type, err.non_retryable) == ("ChannelSecretUnavailable", False)
    _seed_secret(sim, "not a url")
    err = await failure(chs, notice(channel="team"), clients)
    assert (err.type, err.non_retryable) == ("ChannelSecretUnavailable", True)
    assert "not a usable webhook_url" in str(err) and "not a url" not in str(err)
    assert rx.received == []


# -- destinations the worker must not send to -------------------------------------------

async def test_a_name_resolving_to_the_metadata_server_gets_nothing(rx: Receiver, monkeypatch,
                                                                     caplog):
    fake_dns(monkeypatch, {"hooks.attacker.example": ["203.0.113.9", "169.254.169.254"]})
    sent = record_sends(monkeypatch)
    chs = channels(rx, evil={"kind": "webhook", "url": "https://hooks.attacker.example/T0K3N"})
    err = await failure(chs, notice(channel="evil"))
    assert (err.type, err.non_retryable) == ("ChannelRejected", True)
    assert err.message == ("webhook:evil: destination refused, nothing was sent: host resolves "
                           "to 169.254.169.254, which is a cloud instance metadata address")
    assert sent == [] and rx.received == []
    # The same worker still delivers to an allowed destination, and logs its host only.
    with caplog.at_level(logging.INFO):
        await send(chs, notice(channel="hook"))
    assert sent == ["127.0.0.1"] and [p for p, _ in rx.received] == ["/hook"]
    assert f"via webhook:hook ({rx.url}): HTTP 202" in caplog.text
    assert "/hook" not in caplog.text.replace("webhook:hook", "")


async def test_a_foreign_name_resolving_to_this_host_gets_nothing(rx: Receiver, monkeypatch):
    # DNS pointing a harmless-looking https name at the worker's own loopback services.
    fake_dns(monkeypatch, {"hooks.rebind.example": ["127.0.0.1"]})
    sent = record_sends(monkeypatch)
    port = rx.url.rsplit(":", 1)[1]
    chs = channels(rx, evil={"kind": "webhook", "url": f"https://hooks.rebind.example:{port}/h"})
    err = await failure(chs, notice(channel="evil"))
    assert (err.type, err.non_retryable) == ("ChannelRejected", True)
    assert "host resolves to 127.0.0.1, which is loopback" in err.message
    assert sent == [] and rx.received == []


async def test_an_unresolvable_host_is_unavailable_not_refused(rx: Receiver, monkeypatch):
    def no_answer(*_args, **_kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    monkeypatch.setattr(socket, "getaddrinfo", no_answer)
    chs = channels(rx, later={"kind": "webhook", "url": "https://hooks.example.com/T0K3N"})
    err = await failure(chs, notice(channel="later"))
    assert (err.type, err.non_retryable) == ("ChannelUnavailable", False)
    assert err.message.startswith("webhook:later: cannot resolve the destination host: gaierror")
    assert "T0K3N" not in err.message


async def test_a_secret_url_aimed_at_the_metadata_server_is_never_used(rx, sim, clients,
                                                                        monkeypatch):
    sent = record_sends(monkeypatch)
    _seed_secret(sim, "http://169.254.169.254/computeMetadata/v1/instance/")
    err = await failure(_secret_channels(rx), notice(channel="team"), clients)
    assert (err.type, err.non_retryable) == ("ChannelSecretUnavailable", True)
    assert err.message.endswith("is not a usable webhook_url: the host is a cloud instance "
                                "metadata address")
    assert "computeMetadata" not in err.message and sent == []


async def test_legacy_notify_records_a_refused_destination_and_sends_nothing(rx: Receiver,
                                                                               monkeypatch):
    fake_dns(monkeypatch, {"hooks.attacker.example": ["169.254.169.254"]})
    sent = record_sends(monkeypatch)
    port = rx.url.rsplit(":", 1)[1]
    out = await ActivityEnvironment().run(NotifyActivities().notify, NotifyParams(
        run_id="r1", incident_id="1278", level="escalation", recipient="db-oncall",
        subject="phase 1 over budget", body="escalating",
        channels=[NotificationChannel(kind="log"),
                  NotificationChannel(kind="webhook", url="file:///etc/passwd"),
                  NotificationChannel(kind="webhook", url="http://169.254.169.254/computeMetadata/v1/"),
                  NotificationChannel(kind="webhook", url="https://hooks.attacker.example/T0K3N"),
                  NotificationChannel(kind="webhook", url="https://u:pw@hooks.example.com/"),
                  NotificationChannel(kind="webhook"),
                  NotificationChannel(kind="webhook", url=f"http://localhost:{port}/legacy")]))
    assert out.delivered == ["log", f"webhook:http://localhost:{port}"]
    assert out.failed == [
        "webhook:file://: destination refused, nothing was sent: scheme 'file' is not "
        "allowed: use https:// (http:// only to a loopback host, for local rehearsal)",
        "webhook:http://169.254.169.254: destination refused, nothing was sent: the host is "
        "a cloud instance metadata address",
        "webhook:https://hooks.attacker.example: destination refused, nothing was sent: host "
        "resolves to 169.254.169.254, which is a cloud instance metadata address",
        "webhook:https://hooks.example.com: destination refused, nothing was sent: must not "
        "carry credentials (user:password@) in the URL",
        "webhook: no url configured"]
    assert sent == ["localhost"] and [p for p, _ in rx.received] == ["/legacy"]
    assert "T0K3N" not in out.model_dump_json() and "pw" not in out.model_dump_json()
