"""The history scanner must find a secret hidden inside an encoded payload."""

from __future__ import annotations

import base64
import json

from tests.history_scan import CANARY, secrets_in


def _history_with_result(value: object) -> dict:
    payload = base64.b64encode(json.dumps(value).encode()).decode()
    return {"events": [{"eventId": "5", "eventType": "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
                        "activityTaskCompletedEventAttributes": {"result": {"payloads": [
                            {"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": payload}]}}}]}


def test_scanner_finds_a_secret_inside_a_base64_payload():
    leaked = _history_with_result({"before": {"env": {"SMTP_PASSWORD": CANARY}}})
    assert secrets_in(leaked) == [CANARY]


def test_scanner_passes_a_fingerprinted_value():
    clean = _history_with_result({"before": {"env": {"SMTP_PASSWORD": "redacted:sha256:ab12"}}})
    assert secrets_in(clean) == []
