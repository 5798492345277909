"""Google-shaped error responses.

Every refusal the simulator makes goes through :class:`GoogleError` so that the real
client libraries map it exactly as they map production errors: gapic REST clients pick
the exception class from the HTTP status and read ``google.rpc.ErrorInfo`` from
``details``; googleapiclient's ``HttpError`` reads ``message`` and ``errors[]``.
"""
from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

# Canonical status string and gRPC code for each HTTP status we emit.
HTTP_TO_STATUS: dict[int, tuple[str, int]] = {
    400: ("INVALID_ARGUMENT", 3),
    403: ("PERMISSION_DENIED", 7),
    404: ("NOT_FOUND", 5),
    405: ("UNIMPLEMENTED", 12),
    409: ("ABORTED", 10),
    412: ("FAILED_PRECONDITION", 9),
    429: ("RESOURCE_EXHAUSTED", 8),
    500: ("INTERNAL", 13),
    501: ("UNIMPLEMENTED", 12),
    502: ("UNAVAILABLE", 14),
    503: ("UNAVAILABLE", 14),
    504: ("DEADLINE_EXCEEDED", 4),
}

# Default errors[].reason per HTTP status (the googleapiclient-style "reason").
DEFAULT_REASON: dict[int, str] = {
    400: "badRequest",
    403: "forbidden",
    404: "notFound",
    405: "methodNotAllowed",
    409: "conflict",
    412: "conditionNotMet",
    429: "rateLimitExceeded",
    500: "backendError",
    502: "backendError",
    503: "backendError",
    504: "deadlineExceeded",
}


class GoogleError(Exception):
    """An API refusal, rendered as ``{"error": {...}}`` with a matching HTTP status."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: str | None = None,
        reason: str | None = None,
        domain: str = "googleapis.com",
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if code == 401:  # AnonymousCredentials cannot refresh: never hand out a 401.
            code = 403
        self.code = code
        self.message = message
        self.status = status or HTTP_TO_STATUS.get(code, ("UNKNOWN", 2))[0]
        self.reason = reason or DEFAULT_REASON.get(code, "unknown")
        self.domain = domain
        self.metadata = metadata or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "status": self.status,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": self.reason,
                        "domain": self.domain,
                        "metadata": self.metadata,
                    }
                ],
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.code)


def invalid(message: str, field: str | None = None) -> GoogleError:
    """400 INVALID_ARGUMENT naming the offending field (clients show the message)."""
    meta = {"field": field} if field else None
    return GoogleError(400, message, status="INVALID_ARGUMENT", reason="invalid", metadata=meta)


def failed_precondition(message: str) -> GoogleError:
    return GoogleError(400, message, status="FAILED_PRECONDITION", reason="failedPrecondition")


def not_found(what: str) -> GoogleError:
    return GoogleError(404, f"{what} was not found.", status="NOT_FOUND", reason="notFound")


def already_exists(what: str) -> GoogleError:
    return GoogleError(409, f"{what} already exists.", status="ALREADY_EXISTS", reason="alreadyExists")


def in_progress(message: str) -> GoogleError:
    """409 used by Cloud SQL (and others) when an admin operation is already running."""
    return GoogleError(409, message, status="ABORTED", reason="operationInProgress")


def grpc_status(code: int, message: str) -> dict[str, Any]:
    """A google.rpc.Status JSON, as embedded in finished long-running operations."""
    return {"code": code, "message": message}
