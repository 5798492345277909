"""Cloud Run v2 services as the API's JSON: names, reads, the record a compensation
needs, and where a rollout stands."""

from __future__ import annotations

import copy
from typing import Any

from google.protobuf import json_format

from activities.clients import GAPIC_TIMEOUT_S, GcpClients, short
from activities.redaction import redact_template
from activities.run_traffic import traffic_of

SUCCEEDED = "CONDITION_SUCCEEDED"
FAILED = "CONDITION_FAILED"


def service_name(project: str, region: str, service: str) -> str:
    return f"projects/{project}/locations/{region}/services/{service}"


def to_json(message: Any) -> dict[str, Any]:
    """A proto-plus message as the API's JSON (camelCase, enum names, no defaults)."""
    return json_format.MessageToDict(type(message).pb(message))


def read_service(clients: GcpClients, name: str) -> dict[str, Any]:
    svc = clients.run_services().get_service(name=name, retry=None, timeout=GAPIC_TIMEOUT_S)
    return to_json(svc)


def list_revisions(clients: GcpClients, service: str) -> list[dict[str, Any]]:
    pager = clients.run_revisions().list_revisions(parent=service, retry=None,
                                                   timeout=GAPIC_TIMEOUT_S)
    return [to_json(r) for r in pager]


def template_of(svc: dict[str, Any]) -> dict[str, Any]:
    tpl = copy.deepcopy(svc.get("template", {}))
    tpl.pop("revision", None)
    return tpl


def record(svc: dict[str, Any]) -> dict[str, Any]:
    """What restore_service needs (template, traffic) plus which revisions were live."""
    return {
        # Credential-like env values only as fingerprints: this record enters history.
        "template": redact_template(template_of(svc)),
        "traffic": traffic_of(svc),
        "latestReadyRevision": short(svc.get("latestReadyRevision", "")),
        "latestCreatedRevision": short(svc.get("latestCreatedRevision", "")),
    }


def rollout(svc: dict[str, Any]) -> str:
    """``ready`` | ``reconciling`` | ``failed`` for the service's latest spec."""
    cond = svc.get("terminalCondition", {})
    if svc.get("reconciling") or cond.get("state") == "CONDITION_RECONCILING":
        return "reconciling"
    if cond.get("state") == FAILED or (
            svc.get("latestCreatedRevision") != svc.get("latestReadyRevision")):
        return "failed"
    return "ready" if cond.get("state") == SUCCEEDED else "reconciling"


def failure_message(svc: dict[str, Any]) -> str:
    cond = svc.get("terminalCondition", {})
    return cond.get("message") or cond.get("reason") or "the revision did not become ready"
