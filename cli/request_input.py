"""Build the run's request from a file and flags, and validate it before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cli.client import CliError, login_name
from runbook.request import RemediationRequest, request_problems


def _load_file(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CliError(f"request file {path} does not exist",
                       "pass the path of a JSON file, e.g. --request-file req.json") from err
    except json.JSONDecodeError as err:
        raise CliError(f"request file {path} is not valid JSON: line {err.lineno} column "
                       f"{err.colno}: {err.msg}", "fix the JSON and try again") from err
    if not isinstance(raw, dict):
        raise CliError(f"request file {path} must hold a JSON object ({{...}}), not "
                       f"{type(raw).__name__}", 'e.g. {"incident_id": "1278"}')
    return raw


def _set_path(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value``; the value is JSON when it parses, else a plain string."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise CliError(f"--set {assignment!r} is not KEY=VALUE",
                       "e.g. --set approval.default.timeout_s=600 or --set targets.project=my-proj")
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise CliError(f"--set {key}: {part!r} is not an object in the request")
        node = child
    node[parts[-1]] = parsed


def raw_request(*, request_file: Path | None = None, incident: str | None = None,
                requested_by: str | None = None, project: str | None = None,
                region: str | None = None, sets: list[str] | None = None) -> dict[str, Any]:
    """The request as a JSON object (flags override the file), not yet validated."""
    raw: dict[str, Any] = _load_file(request_file) if request_file else {}
    if incident is not None:
        raw["incident_id"] = incident
    if requested_by is not None:
        raw["requested_by"] = requested_by
    elif not raw.get("requested_by"):
        # The two-person rule compares approvers with the requester: record who asked.
        raw["requested_by"] = login_name()
    if project is not None:
        raw.setdefault("targets", {})["project"] = project
    if region is not None:
        raw.setdefault("targets", {})["region"] = region
    for assignment in sets or []:
        _set_path(raw, assignment)
    return raw


def build_request(**options: Any) -> RemediationRequest:
    """The validated request (options as for raw_request).

    Raises CliError listing every bad field, so nothing half-valid reaches the server.
    """
    return validate(raw_request(**options))


def validate(raw: Any) -> RemediationRequest:
    model, problems = request_problems(raw)
    if problems:
        lines = "\n".join(f"  - {p.field}: {p.reason}" for p in problems)
        raise CliError(f"the request is not valid ({len(problems)} problem"
                       f"{'s' if len(problems) != 1 else ''}):\n{lines}",
                       "fix the named field(s) in the request file or flags and try again")
    assert model is not None
    return model
