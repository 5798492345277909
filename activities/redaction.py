"""Keep credential values out of workflow history.

Cloud Run env vars may hold plaintext credentials (``DB_PASSWORD=...``) even though they
should reference Secret Manager. Everything an activity returns or heartbeats lands in
history, so such values are recorded only as a fingerprint. A restore recovers the real
value from a template that still holds it (the live service, or the immutable revision
recorded before the change) and checks it against the fingerprint.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any, Iterable

from temporalio.exceptions import ApplicationError

from runbook.credentials import looks_like_credential

_PREFIX = "redacted:sha256:"


def fingerprint(value: str) -> str:
    return _PREFIX + hashlib.sha256(value.encode()).hexdigest()[:16]


def is_redacted(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(_PREFIX)


def redact_env(env: dict[str, str]) -> dict[str, str]:
    return {k: fingerprint(v) if looks_like_credential(k) and not is_redacted(v) else v
            for k, v in env.items()}


def redact_template(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Cloud Run template with credential-like literal env values fingerprinted."""
    tpl = copy.deepcopy(template)
    for container in tpl.get("containers", []):
        for entry in container.get("env", []):
            value = entry.get("value")
            if isinstance(value, str) and looks_like_credential(entry.get("name", "")) \
                    and not is_redacted(value):
                entry["value"] = fingerprint(value)
    return tpl


def unredact_template(template: dict[str, Any], sources: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``template`` with every fingerprinted value replaced by the real one found in
    ``sources`` (templates or revisions read from the API). Raises a non-retryable error
    naming the variable when no source holds a value with that fingerprint."""
    known: dict[tuple[str, str], str] = {}
    for src in sources:
        for container in src.get("containers", []):
            for entry in container.get("env", []):
                value = entry.get("value")
                if isinstance(value, str) and not is_redacted(value):
                    known[(entry.get("name", ""), fingerprint(value))] = value
    tpl = copy.deepcopy(template)
    for container in tpl.get("containers", []):
        for entry in container.get("env", []):
            value = entry.get("value")
            if is_redacted(value):
                real = known.get((entry.get("name", ""), value))
                if real is None:
                    raise ApplicationError(
                        f"cannot restore env var {entry.get('name')}: its recorded value "
                        "(kept out of history) is in neither the live template nor the "
                        "recorded revision", type="FailedPrecondition", non_retryable=True)
                entry["value"] = real
    return tpl
