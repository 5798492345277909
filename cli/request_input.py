"""Build the run's request from a file and flags, and validate it before anything is sent."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cli.client import CliError, login_name
from runbook.request import RemediationRequest, request_problems


# A request is a small JSON object: these bounds refuse what no request needs, before
# anything can exhaust memory or the parser's stack.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
FILE_HINT = 'pass a UTF-8 JSON file holding one object, e.g. {"incident_id": "1278"}'


def _file_error(path: Path, reason: str, hint: str = FILE_HINT) -> CliError:
    # Exit code 2, like any other invalid command-line input (the file is an argument).
    return CliError(f"request file {path}: {reason}", hint, exit_code=2)


def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def _finite(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"number {token[:30]} is out of range")
    return value


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests more than MAX_DEPTH levels (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _load_file(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise _file_error(path, "does not exist",
                          "pass the path of a JSON file, e.g. --request-file req.json") from err
    except IsADirectoryError as err:
        raise _file_error(path, "is a directory, not a file") from err
    except OSError as err:
        raise _file_error(path, f"cannot be read ({err.strerror or err})") from err
    if len(data) > MAX_FILE_BYTES:
        raise _file_error(path, f"is {len(data)} bytes; a request is at most {MAX_FILE_BYTES} bytes")
    if b"\0" in data:
        raise _file_error(path, "is a binary file, not JSON text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _file_error(path, f"is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}; "
                                "a Latin-1 or other legacy encoding?)",
                          "save the file as UTF-8 and try again") from err
    try:
        raw = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as err:
        raise _file_error(path, f"is not valid JSON: line {err.lineno} column {err.colno}: {err.msg}",
                          "fix the JSON and try again") from err
    except RecursionError as err:
        raise _file_error(path, f"nests deeper than {MAX_DEPTH} levels; a request is a shallow JSON object") from err
    except ValueError as err:  # NaN/Infinity, out-of-range or overlong numbers
        raise _file_error(path, f"is not valid JSON: {err}", "fix the JSON and try again") from err
    if not isinstance(raw, dict):
        raise _file_error(path, f"must hold a JSON object ({{...}}), not {type(raw).__name__}",
                          'e.g. {"incident_id": "1278"}')
    if _too_deep(raw):
        raise _file_error(path, f"nests deeper than {MAX_DEPTH} levels; a request is a shallow JSON object")
    return raw


def _set_path(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value``; the value is JSON when it parses, else a plain string."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise CliError(f"--set {assignment!r} is not KEY=VALUE",
                       "e.g. --set approval.default.timeout_s=600 or --set targets.project=my-proj")
    try:
        parsed: Any = json.loads(value, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError:
        parsed = value
    except (RecursionError, ValueError) as err:  # absurdly deep, NaN/Infinity, huge numbers
        raise CliError(f"--set {key.strip()}: the value is not a usable JSON value "
                       f"({'nested too deeply' if isinstance(err, RecursionError) else err})",
                       "give a plain value, e.g. --set soak.window_s=120", exit_code=2) from err
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
    if _too_deep(raw):
        raise CliError(f"the request nests deeper than {MAX_DEPTH} levels", "check the --set options",
                       exit_code=2)
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
