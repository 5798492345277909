"""Find secret values in a workflow history, payloads decoded.

History JSON carries payloads as base64; a plain substring search would miss a secret
inside an activity result or a heartbeat, so every ``data`` field is decoded first.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Iterator

from temporalio.client import WorkflowHistory

# Values that must never appear in any history of the suite. The e2e worker uses
# PROBE_TOKEN as its WebSocket credential; CANARY sits in a Cloud Run env var.
PROBE_TOKEN = "e2e-probe-token-7c41d9"
CANARY = "canary-s3cr3t-9f2d51"
SECRET_VALUES = (PROBE_TOKEN, CANARY)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "data" and isinstance(value, str):
                try:
                    yield base64.b64decode(value, validate=True).decode("utf-8", "replace")
                except (binascii.Error, ValueError):
                    pass
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def secrets_in(history: WorkflowHistory | dict[str, Any],
               secrets: tuple[str, ...] = SECRET_VALUES) -> list[str]:
    doc = history.to_json_dict() if isinstance(history, WorkflowHistory) else history
    text = "\n".join(_strings(doc))
    return [s for s in secrets if s in text]
