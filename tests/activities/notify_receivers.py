"""A local HTTP receiver that plays a Slack incoming webhook, the PagerDuty Events API v2
and a generic webhook, checking each payload against the vendor's documented rules and
answering as the vendor does.

- Slack (https://api.slack.com/reference/block-kit/blocks): ``text`` string, ``blocks``
  list of at most 50 known blocks; header plain_text <= 150; section text <= 3000, at
  most 10 fields each <= 2000; context 1-10 elements; block_id <= 255; actions 1-25
  elements, action_ids unique in the block; a button's text plain_text <= 75,
  action_id <= 255, value <= 2000, url <= 3000, style primary|danger, its confirm
  dialog title <= 100, text <= 300, confirm/deny <= 30. Each block is also parsed by
  ``slack_sdk``'s Block Kit models, whose ``to_dict()`` applies the SDK's validators.
  Incoming webhook paths (``/services/...``) answer 200 ``ok``, or 400
  ``invalid_blocks`` / ``invalid_payload`` (text/plain).
- Slack ``response_url`` (``/actions/...``; https://docs.slack.dev/interactivity/handling-user-interaction,
  "Message responses"): the message fields ``text`` and/or ``blocks`` (checked as
  above), ``response_type`` in_channel|ephemeral, ``replace_original`` /
  ``delete_original`` booleans, ``thread_ts``; nothing else. Answered like an incoming
  webhook (the same hooks.slack.com service).
- PagerDuty (developer-docs events-API-v2 "Send an Alert Event"): ``routing_key`` 32
  alphanumerics, ``event_action`` trigger|acknowledge|resolve, ``dedup_key`` <= 255
  (required unless trigger), for trigger ``payload.summary`` (<= 1024), ``source``,
  ``severity`` critical|error|warning|info. Answers 202 ``{"status": "success",
  "message": "Event processed", "dedup_key": ...}`` or 400 ``{"status": "invalid
  event", "message": "Event object is invalid", "errors": [...]}``.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

TEXT_TYPES = {"plain_text", "mrkdwn"}
BLOCK_TYPES = {"header", "section", "context", "divider", "actions", "image", "input",
               "rich_text", "file", "video", "markdown"}
BUTTON_STYLES = {"primary", "danger"}
RESPONSE_URL_FIELDS = {"text", "blocks", "attachments", "response_type", "replace_original",
                       "delete_original", "thread_ts", "mrkdwn", "unfurl_links", "unfurl_media",
                       "metadata"}
MESSAGE_TEXT_MAX = 40000  # Slack truncates a message's text beyond this
SEVERITIES = {"critical", "error", "warning", "info"}
ACTIONS = {"trigger", "acknowledge", "resolve"}


def _text_problems(where: str, obj: Any, limit: int, types: set[str] = TEXT_TYPES) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in types:
        return [f"{where}: must be a text object of type {sorted(types)}"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}.text: must be a non-empty string"]
    return [f"{where}.text: longer than {limit}"] if len(text) > limit else []


def slack_problems(body: Any) -> list[str]:
    """An incoming webhook message: ``text`` (the notification fallback) and blocks."""
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
        return ["text: required non-empty string"]
    return blocks_problems(body.get("blocks"))


def response_url_problems(body: Any) -> list[str]:
    """A message sent to an interaction's ``response_url``."""
    if not isinstance(body, dict):
        return ["the body must be a JSON object"]
    problems = [f"{key}: not a response_url message field" for key in body
                if key not in RESPONSE_URL_FIELDS]
    text = body.get("text")
    if "blocks" not in body and (not isinstance(text, str) or not text):
        problems.append("text: required non-empty string when there are no blocks")
    if text is not None and (not isinstance(text, str) or len(text) > MESSAGE_TEXT_MAX):
        problems.append(f"text: a string of at most {MESSAGE_TEXT_MAX}")
    if "blocks" in body:
        problems += blocks_problems(body["blocks"])
    if "response_type" in body and body["response_type"] not in ("in_channel", "ephemeral"):
        problems.append("response_type: in_channel or ephemeral")
    for flag in ("replace_original", "delete_original"):
        if flag in body and not isinstance(body[flag], bool):
            problems.append(f"{flag}: must be a boolean")
    return problems


def blocks_problems(blocks: Any) -> list[str]:
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return ["blocks: must be a list of 1-50 blocks"]
    problems: list[str] = []
    for i, block in enumerate(blocks):
        problems += _block_problems(f"blocks[{i}]", block)
    return problems


def _block_problems(where: str, block: Any) -> list[str]:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in BLOCK_TYPES:
        return [f"{where}.type: unknown {kind!r}"]
    problems: list[str] = []
    if "block_id" in block and (not isinstance(block["block_id"], str)
                                or len(block["block_id"]) > 255):
        problems.append(f"{where}.block_id: string of at most 255")
    if kind == "header":
        problems += _text_problems(f"{where}.text", block.get("text"), 150, {"plain_text"})
    elif kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(f"{where}: needs text or fields")
        if "text" in block:
            problems += _text_problems(f"{where}.text", block["text"], 3000)
        if "fields" in block:
            fields = block["fields"]
            if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                problems.append(f"{where}.fields: 1-10 text objects")
            else:
                for j, f in enumerate(fields):
                    problems += _text_problems(f"{where}.fields[{j}]", f, 2000)
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            problems.append(f"{where}.elements: 1-10 elements")
        else:
            for j, e in enumerate(elements):
                problems += _text_problems(f"{where}.elements[{j}]", e, 3000)
    elif kind == "actions":
        problems += _actions_problems(where, block)
    # The SDK's models second (a block our checks already refused may not even parse).
    return problems or _sdk_problems(where, block)


def _actions_problems(where: str, block: dict) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
        return [f"{where}.elements: 1-25 interactive elements"]
    problems: list[str] = []
    action_ids = [e.get("action_id") for e in elements if isinstance(e, dict)]
    if len([a for a in action_ids if a is not None]) != len({a for a in action_ids if a}):
        problems.append(f"{where}.elements: action_id must be unique within the block")
    for j, e in enumerate(elements):
        if isinstance(e, dict) and e.get("type") == "button":
            problems += _button_problems(f"{where}.elements[{j}]", e)
    return problems


def _button_problems(where: str, button: dict) -> list[str]:
    problems = _text_problems(f"{where}.text", button.get("text"), 75, {"plain_text"})
    for field, limit in (("action_id", 255), ("value", 2000), ("url", 3000)):
        if field in button and (not isinstance(button[field], str)
                                or not 1 <= len(button[field]) <= limit):
            problems.append(f"{where}.{field}: a string of 1-{limit}")
    if "style" in button and button["style"] not in BUTTON_STYLES:
        problems.append(f"{where}.style: primary or danger")
    confirm = button.get("confirm")
    if confirm is not None:
        if not isinstance(confirm, dict):
            return problems + [f"{where}.confirm: must be a confirmation dialog object"]
        problems += _text_problems(f"{where}.confirm.title", confirm.get("title"), 100,
                                   {"plain_text"})
        problems += _text_problems(f"{where}.confirm.text", confirm.get("text"), 300)
        for field in ("confirm", "deny"):
            problems += _text_problems(f"{where}.confirm.{field}", confirm.get(field), 30,
                                       {"plain_text"})
        if "style" in confirm and confirm["style"] not in BUTTON_STYLES:
            problems.append(f"{where}.confirm.style: primary or danger")
    return problems


def _sdk_problems(where: str, block: dict) -> list[str]:
    """What slack_sdk's own model of the block refuses (its to_dict() validates)."""
    try:
        parsed = Block.parse(block)
        if parsed is None:
            return [f"{where}: slack_sdk cannot parse it"]
        parsed.to_dict()
    except (SlackObjectFormationError, TypeError, ValueError) as err:
        return [f"{where}: slack_sdk: {err}"]
    return []


def pagerduty_problems(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["Event object must be a JSON object"]
    problems: list[str] = []
    key = body.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        problems.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    elif not key.isalnum():
        problems.append("'routing_key' cannot contain non-alphanumeric characters.")
    action = body.get("event_action")
    if action not in ACTIONS:
        problems.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    dedup = body.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        problems.append("'dedup_key' is too long (maximum is 255 characters)")
    if action in ("acknowledge", "resolve") and not dedup:
        problems.append("'dedup_key' is required for acknowledge and resolve events")
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return problems + ["'payload' is missing or not an object"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary:
            problems.append("'summary' is missing or blank")
        elif len(summary) > 1024:
            problems.append("'summary' is too long (maximum is 1024 characters)")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            problems.append("'source' is missing or blank")
        if payload.get("severity") not in SEVERITIES:
            problems.append("'severity' is invalid (must be one of: critical, error, warning, info)")
        for field in ("component", "group", "class"):
            if field in payload and not isinstance(payload[field], str):
                problems.append(f"'{field}' must be a string")
        if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
            problems.append("'custom_details' must be an object")
    return problems


class Receiver:
    """Runs on 127.0.0.1:<free port>; ``script`` forces the next responses."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []  # (path, JSON body) of accepted requests
        self.script: list[tuple[int, dict[str, str], str]] = []  # forced (status, headers, body)
        self.delay_s = 0.0
        # Bumped by reset(): a slow request from an earlier test records nothing later.
        self.generation = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.generation = receiver.generation
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.delay_s:
                    threading.Event().wait(receiver.delay_s)
                if receiver.script:
                    status, headers, text = receiver.script.pop(0)
                    return self._answer(status, text, "text/plain", headers)
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._answer(400, "invalid_payload", "text/plain")
                if self.path == "/v2/enqueue":
                    return self._pagerduty(body)
                self._record(self.path, body)
                if self.path.startswith("/services/"):
                    if slack_problems(body):
                        return self._answer(400, "invalid_blocks", "text/plain")
                    return self._answer(200, "ok", "text/plain")
                if self.path.startswith("/actions/"):  # an interaction's response_url
                    if response_url_problems(body):
                        return self._answer(400, "invalid_blocks", "text/plain")
                    return self._answer(200, "ok", "text/plain")
                return self._answer(202, "", "text/plain")

            def _pagerduty(self, body: Any) -> None:
                problems = pagerduty_problems(body)
                if problems:
                    self._record(self.path + "#rejected", {"errors": problems})
                    return self._answer(400, json.dumps({"status": "invalid event",
                                                         "message": "Event object is invalid",
                                                         "errors": problems}), "application/json")
                self._record(self.path, body)
                key = body.get("dedup_key") or uuid.uuid4().hex
                self._answer(202, json.dumps({"status": "success", "message": "Event processed",
                                              "dedup_key": key}), "application/json")

            def _record(self, path: str, body: Any) -> None:
                if self.generation == receiver.generation:
                    receiver.received.append((path, body))

            def _answer(self, status: int, text: str, ctype: str,
                        headers: dict[str, str] | None = None) -> None:
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test): nothing to answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.generation += 1
        self.received.clear()
        self.script.clear()
        self.delay_s = 0.0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def record_sends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Hosts of every request handed to httpx's transport from now on: what the worker
    actually tried to send, whether or not anything listened there."""
    sent: list[str] = []
    real = httpx.AsyncHTTPTransport.handle_async_request

    async def spy(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        sent.append(request.url.host)
        return await real(self, request)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", spy)
    return sent


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Make ``socket.getaddrinfo`` (which ``loop.getaddrinfo`` calls) answer made-up names
    with the given addresses; other names resolve as usual. Returns the names asked."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> list[tuple[Any, ...]]:
        asked.append(host)
        if host not in answers:
            return real(host, port, family, type, proto, flags)
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0)) if ":" in a
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked
