"""Decode Temporal payloads (as found in history) into plain Python values for people."""

from __future__ import annotations

import base64
import json
from typing import Any, Iterable

from temporalio.api.common.v1 import Payload


def decode(payload: Payload | None) -> Any:
    """json/plain (what the pydantic converter writes) becomes its JSON value.

    Anything else is shown as what it is rather than dropped, so the audit never hides
    that an input existed.
    """
    if payload is None:
        return None
    encoding = payload.metadata.get("encoding", b"").decode(errors="replace")
    if encoding in ("json/plain", "json/protobuf"):
        try:
            return json.loads(payload.data)
        except ValueError:
            return payload.data.decode(errors="replace")
    if encoding == "binary/null":
        return None
    if encoding == "binary/plain":
        return {"binary_base64": base64.b64encode(payload.data).decode()}
    return f"<{encoding or 'unknown encoding'} payload, {len(payload.data)} bytes>"


def decode_all(payloads: Iterable[Payload]) -> list[Any]:
    return [decode(p) for p in payloads]


def first(payloads_msg: Any) -> Any:
    """The first argument of a Payloads message (our workflows take one argument)."""
    items = list(getattr(payloads_msg, "payloads", []) or [])
    return decode(items[0]) if items else None
