"""Errors are classified once (activities/errors.py): a library's refusal of malformed
arguments is final; a garbled response is worth another attempt."""

from __future__ import annotations

import json

import pytest

from activities import errors
from activities.clients import GcpClients
from activities.settings import Settings


def test_a_name_the_library_refuses_is_a_final_invalid_argument(simulator) -> None:
    clients = GcpClients(Settings(backend="sim", gcp_endpoint=simulator.endpoint))
    api = clients.discovery("compute")
    with pytest.raises((TypeError, ValueError)) as raised:
        # googleapiclient checks path parameters against the discovery pattern locally.
        api.healthChecks().get(project="../../etc/passwd", healthCheck="hc").execute()
    err = errors.to_application_error(raised.value, action="diagnose", resource="hc")
    assert err.type == errors.INVALID_ARGUMENT and err.non_retryable
    assert "refused the request" in err.message and "passwd" in err.message


def test_an_unparseable_response_stays_retryable() -> None:
    try:
        json.loads("<html>bad gateway</html>")
    except ValueError as exc:
        err = errors.to_application_error(exc, action="diagnose", resource="hc")
    assert err.type == errors.OPERATION_FAILED and not err.non_retryable
