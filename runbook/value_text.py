"""One value as a person reads it: JSON-like (``null``, ``true``), never a Python repr.

Shared by the CLI's diffs (cli/diffs.py) and the Temporal UI's Current Details
(workflows/current_details.py), so a plan row reads the same everywhere. Pure and cheap:
the workflow calls it on every status publish.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel

ELLIPSIS = "…"
_MIN_WIDTH = 8
# Inside a list or a mapping a string stays unquoted only when it cannot be mistaken for
# punctuation: names, numbers, paths, sizes like 6Gi.
_PLAIN_NESTED = re.compile(r"[A-Za-z0-9_./:@%+\-]+")
_LITERALS = {"null", "true", "false"}


def _top_string(s: str) -> str:
    # Alone on its side of an arrow a string reads best bare, unless bare it would look like
    # something else (empty, a JSON literal, surrounding blanks, a line break).
    plain = s and s == s.strip() and s not in _LITERALS and s.isprintable()
    return s if plain else json.dumps(s, ensure_ascii=False)


def _nested_string(s: str) -> str:
    plain = _PLAIN_NESTED.fullmatch(s) and s not in _LITERALS
    return s if plain else json.dumps(s, ensure_ascii=False)


def _text(value: Any, top: bool) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, Enum):
        value = value.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, datetime):
        value = value.isoformat().replace("+00:00", "Z")
    if isinstance(value, str):
        return _top_string(value) if top else _nested_string(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_nested_string(str(k))}: {_text(v, False)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v, False) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "[" + ", ".join(sorted(_text(v, False) for v in value)) + "]"
    return _top_string(str(value)) if top else _nested_string(str(value))


def shorten(text: str, width: int, keep_tail: bool = False) -> str:
    """At most ``width`` characters; a cut is marked with an ellipsis. ``keep_tail`` cuts
    the middle instead of the end (names whose end tells them apart: revisions, paths)."""
    width = max(width, _MIN_WIDTH)
    if len(text) <= width:
        return text
    if keep_tail:
        tail = (width - 1) * 2 // 3  # the end names the thing; the start is often a prefix
        return text[: width - 1 - tail] + ELLIPSIS + text[-tail:]
    return text[: width - 1] + ELLIPSIS


def format_value(value: Any, width: int = 60) -> str:
    """``value`` JSON-like in at most ``width`` characters: ``null``, ``true``, ``8``,
    ``6Gi``, ``[a, b]``, ``{cpu: 4, memory: 6Gi}``; simple strings are not quoted."""
    text = _text(value, True)
    structured = isinstance(value, (dict, list, tuple, set, frozenset, BaseModel))
    return shorten(text, width, keep_tail=not structured)
