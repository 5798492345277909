"""Decode Temporal payloads (as found in history) into plain Python values for people."""

from __future__ import annotations

import base64
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

# Without a type hint the SDK's converter gives plain JSON values, which is what an audit of
# pydantic payloads needs; the audit never has the workflow's types to decode into.
_CONVERTER = DataConverter.default.payload_converter


def decode(payload: Payload | None) -> Any:
    """The payload's value; bytes as base64, and anything the SDK cannot decode (encrypted,
    compressed, malformed) as a note of what it is, so the audit never hides that an input
    existed."""
    if payload is None:
        return None
    try:
        value = _CONVERTER.from_payload(payload)
    except Exception:
        encoding = payload.metadata.get("encoding", b"").decode(errors="replace")
        return f"<{encoding or 'unknown encoding'} payload, {len(payload.data)} bytes>"
    # Raw bytes would not survive the JSON and HTML renderings of the audit.
    return {"binary_base64": base64.b64encode(value).decode()} if isinstance(value, bytes) else value


def first(payloads_msg: Any) -> Any:
    """The first argument of a Payloads message (our workflows take one argument)."""
    items = list(getattr(payloads_msg, "payloads", []) or [])
    return decode(items[0]) if items else None
