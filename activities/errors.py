"""The one error map: every failure an activity can meet becomes an ``ApplicationError``.

The ``type`` names line up with ``runbook.definition.RetrySpec.non_retryable_error_types``
(InvalidArgument, PermissionDenied, FailedPrecondition, NotFound, StepFailed), and every
error also carries an explicit ``non_retryable`` flag, so a step retries exactly when
GCP_FACTS §7 says it should whatever RetryPolicy the workflow uses.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import httplib2
import httpx
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from googleapiclient.errors import HttpError
from temporalio.exceptions import ApplicationError

# Non-retryable: the request or the world is wrong, repeating it cannot help.
INVALID_ARGUMENT = "InvalidArgument"
PERMISSION_DENIED = "PermissionDenied"
FAILED_PRECONDITION = "FailedPrecondition"
NOT_FOUND = "NotFound"
STEP_FAILED = "StepFailed"  # a check ran fine and found the world bad
# Retryable (or by code).
RATE_LIMITED = "RateLimited"
UNAVAILABLE = "Unavailable"
CONFLICT = "Conflict"  # ABORTED / SQL operationInProgress (ALREADY_EXISTS: non-retryable)
STALE_FINGERPRINT = "StaleFingerprint"  # 412: re-read the resource, then retry
TRANSPORT = "Transport"
OPERATION_FAILED = "OperationFailed"
CANCELLED = "Cancelled"  # cancelled after a mutation was issued (carries the checkpoint)

NON_RETRYABLE_TYPES = frozenset(
    {INVALID_ARGUMENT, PERMISSION_DENIED, FAILED_PRECONDITION, NOT_FOUND, STEP_FAILED})

# google.rpc.Code numbers (LRO errors carry these).
_GRPC_NAMES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
    13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}
# GCP_FACTS §7: an LRO that finished with one of these may succeed when repeated.
_RETRYABLE_LRO_CODES = {"UNAVAILABLE", "ABORTED", "INTERNAL", "RESOURCE_EXHAUSTED"}
_RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
_IN_PROGRESS_REASONS = {"operationInProgress", "resourceNotReady"}
_ALREADY_EXISTS_REASONS = {"alreadyExists", "duplicate"}


def app_error(message: str, type_: str, *details: Any, non_retryable: bool | None = None,
              ) -> ApplicationError:
    if non_retryable is None:
        non_retryable = type_ in NON_RETRYABLE_TYPES
    return ApplicationError(message, *details, type=type_, non_retryable=non_retryable)


def step_failed(message: str, *details: Any) -> ApplicationError:
    return app_error(message, STEP_FAILED, *details, non_retryable=True)


def _classify(http_status: int | None, status: str, reason: str) -> tuple[str, bool]:
    """(type, non_retryable) from the HTTP status, the google.rpc status name and reason."""
    if reason in _RATE_LIMIT_REASONS:
        return RATE_LIMITED, False
    if reason in _IN_PROGRESS_REASONS:
        return CONFLICT, False
    if http_status is None:
        return _classify_grpc(status)
    if http_status == 400:
        return (FAILED_PRECONDITION if status == "FAILED_PRECONDITION" else INVALID_ARGUMENT), True
    if http_status in (401, 403):
        return PERMISSION_DENIED, True
    if http_status == 404:
        return NOT_FOUND, True
    if http_status == 409:
        if status == "ALREADY_EXISTS" or reason in _ALREADY_EXISTS_REASONS:
            return CONFLICT, True
        return CONFLICT, False  # ABORTED: concurrent change, back off and retry
    if http_status == 412:
        return STALE_FINGERPRINT, False
    if http_status == 429:
        return RATE_LIMITED, False
    if http_status >= 500:
        return UNAVAILABLE, False
    # Any other 4xx (405, 411, 413, ...) is a malformed request: repeating it cannot help.
    return INVALID_ARGUMENT, True


def _classify_grpc(status: str) -> tuple[str, bool]:
    return {
        "INVALID_ARGUMENT": (INVALID_ARGUMENT, True),
        "OUT_OF_RANGE": (INVALID_ARGUMENT, True),
        "FAILED_PRECONDITION": (FAILED_PRECONDITION, True),
        "PERMISSION_DENIED": (PERMISSION_DENIED, True),
        "UNAUTHENTICATED": (PERMISSION_DENIED, True),
        "NOT_FOUND": (NOT_FOUND, True),
        "ALREADY_EXISTS": (CONFLICT, True),
        "ABORTED": (CONFLICT, False),
        "RESOURCE_EXHAUSTED": (RATE_LIMITED, False),
        "UNAVAILABLE": (UNAVAILABLE, False),
        "DEADLINE_EXCEEDED": (UNAVAILABLE, False),
        "INTERNAL": (UNAVAILABLE, False),
    }.get(status, (OPERATION_FAILED, False))


def _payload_error(raw: Any) -> dict[str, Any]:
    """The ``error`` object of a Google JSON error body, or {}."""
    try:
        payload = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
    except (ValueError, TypeError):
        return {}
    if isinstance(payload, list):
        payload = next((p for p in payload if isinstance(p, dict)), {})
    err = payload.get("error") if isinstance(payload, dict) else None
    return err if isinstance(err, dict) else {}


def _first_reason(errors: Any, details: Any) -> str:
    for item in list(errors or ()) + list(details or ()):
        if isinstance(item, dict) and item.get("reason"):
            return str(item["reason"])
    return ""


def _field_of(details: Any) -> str:
    """The offending field an ``ErrorInfo`` or ``BadRequest`` detail names, if any."""
    for d in details or ():
        if not isinstance(d, dict):
            continue
        field = (d.get("metadata") or {}).get("field")
        if field:
            return str(field)
        for violation in d.get("fieldViolations") or ():
            if violation.get("field"):
                return str(violation["field"])
    return ""


def _with_field(message: str, field: str) -> str:
    return f"{message} (field {field})" if field and field not in message else message


def _from_api_core(exc: gexc.GoogleAPICallError) -> tuple[int | None, str, str, str]:
    err: dict[str, Any] = {}
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            err = _payload_error(response.json())
        except Exception:  # not JSON: keep what the exception itself parsed
            err = {}
    status = str(err.get("status") or "")
    if not status and exc.grpc_status_code is not None:
        status = exc.grpc_status_code.name
    reason = exc.reason or _first_reason(exc.errors, err.get("details"))
    code = exc.code if isinstance(exc.code, int) else None
    message = str(err.get("message") or exc.message)
    field = (exc.metadata or {}).get("field", "") if isinstance(exc.metadata, dict) else ""
    return code, status, reason, _with_field(message, field or _field_of(err.get("details")))


def _from_http_error(exc: HttpError) -> tuple[int | None, str, str, str]:
    err = _payload_error(exc.content)
    status = str(err.get("status") or "")
    reason = _first_reason(err.get("errors"), err.get("details"))
    message = str(err.get("message") or exc.reason or exc)
    return exc.status_code, status, reason, _with_field(message, _field_of(err.get("details")))


_TRANSPORT_ERRORS = (
    requests.exceptions.ConnectionError, requests.exceptions.Timeout,
    httplib2.HttpLib2Error, httpx.TransportError, auth_exc.TransportError,
    socket.timeout, ConnectionError, TimeoutError,
)


def to_application_error(exc: BaseException, *, action: str, resource: str,
                         checkpoint: dict[str, Any] | None = None) -> ApplicationError:
    """Map any failure of ``action`` on ``resource`` to a typed ``ApplicationError``.

    ``checkpoint`` (a dumped MutationCheckpoint) becomes the first detail when a mutation
    was already issued, so the workflow can still roll it back.
    """
    if isinstance(exc, ApplicationError):
        return with_checkpoint(exc, checkpoint)
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        # Only reachable if a library retry slipped through; judge by the last error.
        return to_application_error(exc.cause, action=action, resource=resource,
                                    checkpoint=checkpoint)
    details = (checkpoint,) if checkpoint is not None else ()
    if isinstance(exc, (gexc.GoogleAPICallError, HttpError)):
        code, status, reason, message = (
            _from_api_core(exc) if isinstance(exc, gexc.GoogleAPICallError)
            else _from_http_error(exc))
        type_, non_retryable = _classify(code, status, reason)
        label = " ".join(x for x in (f"HTTP {code}" if code else "", status, reason) if x)
        return app_error(f"{action} {resource}: {label}: {message}", type_, *details,
                         non_retryable=non_retryable)
    if isinstance(exc, gexc.RetryError):
        return app_error(f"{action} {resource}: retry deadline exceeded: {exc}", UNAVAILABLE,
                         *details, non_retryable=False)
    if isinstance(exc, (auth_exc.DefaultCredentialsError, auth_exc.RefreshError)):
        return app_error(f"{action} {resource}: credentials: {exc}", PERMISSION_DENIED,
                         *details, non_retryable=True)
    if isinstance(exc, _TRANSPORT_ERRORS):
        return app_error(f"{action} {resource}: transport error {type(exc).__name__}: {exc}",
                         TRANSPORT, *details, non_retryable=False)
    if isinstance(exc, (TypeError, ValueError)) and not isinstance(
            exc, (json.JSONDecodeError, UnicodeError)):
        # The client library refused the arguments before sending anything (a project id
        # that does not match its pattern, a malformed name): the same call fails the same
        # way every time. An unparseable response stays retryable below.
        return app_error(f"{action} {resource}: the client library refused the request: "
                         f"{type(exc).__name__}: {exc}", INVALID_ARGUMENT, *details,
                         non_retryable=True)
    # Unknown failure (e.g. an unparseable response): report it plainly and let the
    # RetryPolicy's attempt limit bound it.
    return app_error(f"{action} {resource}: {type(exc).__name__}: {exc}", OPERATION_FAILED,
                     *details, non_retryable=False)


def http_status_of(exc: BaseException) -> int | None:
    """The HTTP status the API answered with, for a library error (or an ApplicationError
    mapped from one); None when no answer came (transport) or it is not an API error."""
    if isinstance(exc, ApplicationError):
        exc = exc.__cause__  # type: ignore[assignment]
    if isinstance(exc, HttpError):
        return exc.status_code
    if isinstance(exc, gexc.GoogleAPICallError) and isinstance(exc.code, int):
        return exc.code
    return None


def without_checkpoint(err: ApplicationError) -> ApplicationError:
    """``err`` without a mutation checkpoint among its details."""
    kept = [d for d in err.details if not (isinstance(d, dict) and "before" in d
                                           and "resource" in d)]
    if len(kept) == len(err.details):
        return err
    new = ApplicationError(err.message, *kept, type=err.type, non_retryable=err.non_retryable,
                           next_retry_delay=err.next_retry_delay)
    new.__cause__ = err.__cause__
    return new


def with_checkpoint(err: ApplicationError, checkpoint: dict[str, Any] | None) -> ApplicationError:
    """``err`` with ``checkpoint`` as its first detail (unchanged if already there)."""
    if checkpoint is None or (err.details and err.details[0] == checkpoint):
        return err
    new = ApplicationError(err.message, checkpoint, *err.details, type=err.type,
                           non_retryable=err.non_retryable,
                           next_retry_delay=err.next_retry_delay)
    new.__cause__ = err.__cause__ or err
    return new


def lro_error(code: int, message: str, *, action: str, resource: str,
              checkpoint: dict[str, Any] | None) -> ApplicationError:
    """A long-running operation that finished with a google.rpc.Status error."""
    name = _GRPC_NAMES.get(code, str(code))
    retryable = name in _RETRYABLE_LRO_CODES
    details = (checkpoint,) if checkpoint is not None else ()
    return app_error(f"{action} {resource}: operation failed with {name}: {message}",
                     OPERATION_FAILED, *details, non_retryable=not retryable)


def discovery_operation_error(op: dict[str, Any], *, action: str, resource: str,
                              checkpoint: dict[str, Any] | None) -> ApplicationError | None:
    """The error of a finished SQL/compute operation (DONE with ``error``), or None.

    Compute gives ``httpErrorStatusCode``; SQL gives only ``errors[].code`` strings, so a
    transient-sounding code is retried and anything else is not.
    """
    errors = (op.get("error") or {}).get("errors") or []
    if not errors:
        return None
    text = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors)
    codes = " ".join(str(e.get("code", "")) for e in errors).upper()
    http_status = op.get("httpErrorStatusCode")
    if isinstance(http_status, int) and http_status:
        type_, non_retryable = _classify(http_status, "", "")
        retryable = not non_retryable or http_status == 409
    else:
        retryable = any(k in codes for k in ("INTERNAL", "UNAVAILABLE", "ABORTED", "IN_PROGRESS",
                                             "TIMEOUT", "RESOURCE_EXHAUSTED", "TRANSIENT",
                                             "CONFLICT", "QUOTA_EXCEEDED"))
    details = (checkpoint,) if checkpoint is not None else ()
    return app_error(f"{action} {resource}: operation {op.get('name', '')} failed: {text}",
                     OPERATION_FAILED, *details, non_retryable=not retryable)
