"""What a change changed, field by field: ``env.DATABASE_POOL_SIZE: 10 → 8``.

A step's before/after are whole resources (a Cloud Run service's template with every
container and variable); people need only the fields that differ. Nested mappings become
dotted paths; lists of objects with a natural key (``name``, as Cloud Run env vars,
containers and Cloud SQL flags have) are matched by that key, so inserting one variable
does not make every later one look changed; other lists of objects are matched by index;
a list of plain values is one value.

Hand-written rather than on a diff library (deepdiff, dictdiffer): those match lists by
index or ignore order altogether, so matching by ``name`` needs the normalisation below
first, after which what remains is the short walk in ``_walk``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runbook.value_text import format_value

__all__ = ["MISSING", "FieldChange", "changed_fields", "format_value", "render_diff_lines",
           "diff_json"]

NATURAL_KEYS = ("name", "key")
ARROW = "→"


class _Missing:
    """The field is absent on that side (distinct from an explicit null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class FieldChange:
    path: str  # "" when the values compared were not containers
    before: Any  # MISSING: the field was added
    after: Any  # MISSING: the field was removed

    @property
    def kind(self) -> str:
        if self.before is MISSING:
            return "added"
        return "removed" if self.after is MISSING else "changed"


def _natural_key(items: list[Any]) -> str | None:
    """The key that names every item once, if the list is one of named objects."""
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in NATURAL_KEYS:
        names = [i.get(key) for i in items]
        if all(isinstance(n, str) for n in names) and len(set(names)) == len(names):
            return key
    return None


def _by_key(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    # {"name": X, "value": V} pairs read as X: V (env vars, database flags).
    out: dict[str, Any] = {}
    for item in items:
        rest = {k: v for k, v in item.items() if k != key}
        out[item[key]] = rest["value"] if set(rest) == {"value"} else rest
    return out


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _walk(before: Any, after: Any, path: str, out: list[FieldChange]) -> None:
    if before is not MISSING and after is not MISSING:
        if before == after and type(before) is type(after):
            return
        if isinstance(before, dict) and isinstance(after, dict):
            for key in sorted(set(before) | set(after), key=str):
                _walk(before.get(key, MISSING), after.get(key, MISSING), _join(path, key), out)
            return
        if isinstance(before, list) and isinstance(after, list):
            named_before, named_after = _natural_key(before), _natural_key(after)
            # An empty side takes the other side's key (every item added or removed).
            key = named_before if named_before == named_after else (
                None if before and after else named_before or named_after)
            if key:
                _walk(_by_key(before, key), _by_key(after, key), path, out)
                return
            both = before + after
            if all(isinstance(i, dict) for i in both):
                for i in range(max(len(before), len(after))):
                    _walk(before[i] if i < len(before) else MISSING,
                          after[i] if i < len(after) else MISSING, f"{path}[{i}]", out)
                return
    out.append(FieldChange(path, before, after))


def changed_fields(before: Any, after: Any) -> list[FieldChange]:
    """Only the fields that differ, in path order within each mapping."""
    out: list[FieldChange] = []
    _walk(before, after, "", out)
    return out


def _line(c: FieldChange, width: int) -> str:
    label = f"{c.path}: " if c.path else ""
    if c.kind == "added":
        return f"(added) {label}{format_value(c.after, width)}"
    if c.kind == "removed":
        return f"(removed) {label}{format_value(c.before, width)}"
    return f"{label}{format_value(c.before, width)} {ARROW} {format_value(c.after, width)}"


def render_diff_lines(before: Any, after: Any, width: int = 60,
                      limit: int | None = None) -> list[str]:
    """One line per changed field, each value at most ``width`` characters; with
    ``limit``, the first ``limit`` lines and then how many more there are."""
    lines = [_line(c, width) for c in changed_fields(before, after)]
    if limit is not None and len(lines) > limit:
        lines = lines[:limit] + [f"and {len(lines) - limit} more field(s)"]
    return lines


def diff_json(before: Any, after: Any) -> list[dict[str, Any]]:
    """The changed fields as JSON data (for ``runbook audit --format json``)."""
    rows = []
    for c in changed_fields(before, after):
        row: dict[str, Any] = {"path": c.path, "change": c.kind}
        if c.before is not MISSING:
            row["before"] = c.before
        if c.after is not MISSING:
            row["after"] = c.after
        rows.append(row)
    return rows
