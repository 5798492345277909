"""Validation errors as problems that name their field: what every refusal of input shows.

Pydantic reports where each error is (its ``loc``); a rule that involves several fields
(a model validator) raises ``FieldValueError`` to say which field(s) it is about, so the
operator is pointed at ``desired.backend_memory``, not at ``desired``.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

# A key (or unknown field) longer than this is shortened in the field path, and a reason
# longer than _REASON_MAX keeps its start and its end: a 100 KB value must not make a
# 100 KB error (whatever validator quoted it).
_PATH_PART_MAX = 64
_REASON_MAX = 1000


class StrictInput(BaseModel):
    """Base of every model read from an operator's input (requests, their parts)."""

    # Unknown keys are typos in an incident: refuse them rather than silently ignore.
    # Strict types: true is not 1, "5" is not 5, 2.5 is not an int; NaN/inf are refused.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class FieldProblem(BaseModel):
    field: str
    reason: str


class FieldValueError(ValueError):
    """A model validator's findings, each for a field path relative to that model."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in problems))
        self.problems = problems


def describe_problems(problems: list[FieldProblem]) -> str:
    return "; ".join(f"{p.field}: {p.reason}" for p in problems)


def model_problems(model: type[BaseModel], raw: object) -> tuple[Any, list[FieldProblem]]:
    """Validate a workflow's raw JSON input as ``model``: the model, or every problem, each
    naming its field (``{}`` and no input mean the defaults)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, [FieldProblem(field="(request)", reason="must be a JSON object")]
    try:
        return model.model_validate(raw), []
    except ValidationError as err:
        return None, [p for e in err.errors(include_url=False) for p in _problems(model, e)]


def _problems(model: type[BaseModel], error: Any) -> list[FieldProblem]:
    loc = [_part(p) for p in error["loc"]]
    found = error.get("ctx", {}).get("error")
    if isinstance(found, FieldValueError):
        return [FieldProblem(field=".".join([*loc, field]), reason=_bounded(reason))
                for field, reason in found.problems]
    reason = error["msg"].removeprefix("Value error, ")
    if error["type"].endswith("_type") or error["type"] == "finite_number":
        reason += f" (got {_type_name(error.get('input'))})"
    if error["type"] == "extra_forbidden":
        known = known_fields(model, loc[:-1])
        reason = (f"unknown field; {'known: ' + ', '.join(known) if known else 'none expected'}"
                  " (unknown keys are refused: a typo must not be silently ignored)")
    return [FieldProblem(field=".".join(loc) or "(request)", reason=_bounded(reason))]


def _bounded(reason: str) -> str:
    if len(reason) <= _REASON_MAX:
        return reason
    return f"{reason[:400]} [... {len(reason) - 800} characters ...] {reason[-400:]}"


def _type_name(value: object) -> str:
    """JSON's name for the type of a value (what the operator wrote)."""
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"),
                       (str, "a string"), (list, "a list"), (dict, "an object")):
        if isinstance(value, kind):
            return f"{name} {value!r}" if kind in (bool, int, float) else name
    return "null" if value is None else type(value).__name__


def _part(p: object) -> str:
    text = str(p)
    if 0 < len(text) <= _PATH_PART_MAX and text.isprintable() and "." not in text.strip("[]"):
        return text
    return repr(text[:40]) + (f"...({len(text)} chars)" if len(text) > 40 else "")


def known_fields(model: type[BaseModel], path: list[str]) -> list[str]:
    """The field names of the object at ``path`` inside ``model`` ([] when it is not an
    object with named fields, e.g. a dict of any keys, or the path leaves the model)."""
    node: Any = model
    for part in path:
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(part)
            if field is None:
                return []
            node = field.annotation
        elif typing.get_origin(node) in (list, dict):
            node = typing.get_args(node)[-1]
        else:
            return []
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return sorted(node.model_fields)
    return []


def _unwrap(node: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` as ``X``."""
    while True:
        origin = typing.get_origin(node)
        if origin is typing.Annotated:
            node = typing.get_args(node)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(node) if a is not type(None)]
            if len(options) != 1:
                return node
            node = options[0]
        else:
            return node
