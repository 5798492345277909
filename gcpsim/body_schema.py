"""Request bodies checked against the APIs' published discovery schemas.

Google's JSON front end parses a request body into the method's proto message before the
service sees it, so a body with a field the message does not have, or a value of the wrong
JSON type, is refused with 400 INVALID_ARGUMENT whatever the service would have done with
it. The message texts follow the public error reports of that front end, e.g.
``Invalid JSON payload received. Unknown name "thinking": Cannot find field.`` and
``Invalid JSON payload received. Unknown name "x" at 'a.b[0]': Cannot find field.``
(many GitHub issue threads quote them verbatim). Unverified: that Compute Engine's v1 API
words its refusal identically; it does refuse unknown fields with 400.

The schemas are the discovery documents shipped with google-api-python-client (the same
ones the discovery clients in this repository are built from), so the simulator and the
clients agree on what a field is.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import googleapiclient

from .errors import invalid

_DOCS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
_INT_RANGES = {"int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1),
               "int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1)}


@lru_cache(maxsize=None)
def _schemas(document: str) -> dict[str, Any]:
    return json.loads((_DOCS / f"{document}.json").read_text())["schemas"]


def _where(path: str) -> str:
    return f" at '{path}'" if path else ""


def _bad_value(path: str, proto_type: str, value: Any) -> Exception:
    shown = json.dumps(value)[:80] if not isinstance(value, str) else json.dumps(value[:80])
    return invalid(f"Invalid value at '{path}' ({proto_type}), {shown}", path)


def _check(schemas: dict[str, Any], spec: dict[str, Any], value: Any, path: str, lenient: bool) -> None:
    if "$ref" in spec:
        spec = schemas[spec["$ref"]]
    kind = spec.get("type")
    if kind == "object" and "properties" in spec:
        if not isinstance(value, dict):
            raise _bad_value(path, "TYPE_MESSAGE", value)
        for name, item in value.items():
            if name not in spec["properties"]:
                raise invalid(f'Invalid JSON payload received. Unknown name {json.dumps(name)[:120]}{_where(path)}: '
                              "Cannot find field.", f"{path}.{name}" if path else name)
            _check(schemas, spec["properties"][name], item, f"{path}.{name}" if path else name, lenient)
    elif kind == "object" and "additionalProperties" in spec:
        if not isinstance(value, dict):
            raise _bad_value(path, "TYPE_MESSAGE", value)
        for name, item in value.items():
            _check(schemas, spec["additionalProperties"], item, f"{path}.{name}", lenient)
    elif kind == "array":
        if not isinstance(value, list):
            raise _bad_value(path, "TYPE_REPEATED", value)
        for i, item in enumerate(value):
            _check(schemas, spec["items"], item, f"{path}[{i}]", lenient)
    elif kind == "string":
        _check_string(spec, value, path, lenient)
    elif kind == "integer":
        _check_integer(spec, value, path)
    elif kind == "number":
        if not _number(value):
            raise _bad_value(path, "TYPE_DOUBLE", value)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _bad_value(path, "TYPE_BOOL", value)
    # "any" (google.protobuf.Value) and objects without a declared shape take any JSON.


def _check_string(spec: dict[str, Any], value: Any, path: str, lenient: bool) -> None:
    if spec.get("format") in _INT_RANGES:  # 64-bit integers travel as JSON strings
        _check_integer(spec, value, path)
        return
    if "enum" in spec:  # proto3 JSON takes an enum by name or by number
        number_ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(spec["enum"])
        if not number_ok and value not in spec["enum"]:
            raise _bad_value(path, "TYPE_ENUM", value)
    elif not isinstance(value, str) and not (lenient and _number(value)):
        raise _bad_value(path, "TYPE_STRING", value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_integer(spec: dict[str, Any], value: Any, path: str) -> None:
    """Proto3 JSON takes an integer as a number or as a string of digits."""
    digits = value.removeprefix("-") if isinstance(value, str) else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= 20:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad_value(path, f"TYPE_{spec.get('format', 'int32').upper()}", value)
    _check_range(spec, value, path)


def _check_range(spec: dict[str, Any], value: int, path: str) -> None:
    lo, hi = _INT_RANGES.get(spec.get("format", "int32"), _INT_RANGES["int32"])
    if not lo <= value <= hi:
        raise _bad_value(path, f"TYPE_{spec.get('format', 'int32').upper()}", value)


def check_body(document: str, schema: str, body: dict[str, Any], *, numbers_as_strings: bool = False) -> None:
    """400 INVALID_ARGUMENT naming the first field of ``body`` that message ``schema`` of the
    discovery document ``document`` (e.g. ``compute.v1``) does not have, or whose JSON type
    does not fit it. ``numbers_as_strings``: a number is taken for a string field (the API
    reads it as its decimal text)."""
    schemas = _schemas(document)
    _check(schemas, schemas[schema], body, "", numbers_as_strings)
