"""Small request/response helpers shared by the API routers."""
from __future__ import annotations

import json
import math
from typing import Any, Callable

from fastapi import Request
from starlette.requests import HTTPConnection

from .context import Sim
from .errors import invalid


def get_sim(conn: HTTPConnection) -> Sim:
    """The simulator context of the app serving this request (or WebSocket)."""
    return conn.app.state.sim


# Protobuf's default recursion limit: Google's JSON front end refuses deeper bodies.
MAX_DEPTH = 100
PRIVATE_KEY = "_sim"  # the simulator's bookkeeping inside stored records; no API has such a field


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"Unexpected token '{token}': JSON has no NaN or Infinity")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"Number out of range: {token[:40]}")
    return value


def _scan(body: Any, allow_private: bool) -> None:
    """Refuse nesting deeper than MAX_DEPTH and (unless allowed) any ``_sim`` key, without
    recursion, so that no body can exhaust the stack of a later step."""
    stack: list[tuple[Any, str, int]] = [(body, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise invalid(f"Invalid JSON payload received. Nesting deeper than {MAX_DEPTH} levels at '{path[:200]}'.")
        if isinstance(value, dict):
            for key, item in value.items():
                where = f"{path}.{key}" if path else key
                if key == PRIVATE_KEY and not allow_private:
                    raise invalid(f'Invalid JSON payload received. Unknown name "{PRIVATE_KEY}"'
                                  f"{f' at {path!r}' if path else ''}: Cannot find field.", where)
                stack.append((item, where, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))


async def read_json(request: Request, *, allow_private: bool = False) -> dict[str, Any]:
    """The JSON object in the request body ({} when empty), or 400 INVALID_ARGUMENT for what
    Google's JSON parser refuses: malformed JSON, NaN/Infinity, numbers out of range,
    nesting beyond MAX_DEPTH, a non-object. A ``_sim`` key (the simulator's private
    bookkeeping) is refused as an unknown field unless ``allow_private`` (admin seeding)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        # Strict UTF-8: json.loads would let lone surrogates through from bytes.
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise invalid(f"Invalid JSON payload received. Nesting deeper than {MAX_DEPTH} levels.") from exc
    except ValueError as exc:  # includes UnicodeDecodeError
        raise invalid(f"Invalid JSON payload received. {str(exc)[:300]}") from exc
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected an object.")
    _scan(body, allow_private)
    return body


def flag(request: Request, name: str) -> bool:
    return str(request.query_params.get(name, "")).lower() in ("true", "1")


def _page(items: list[Any], request: Request) -> tuple[list[Any], str | None]:
    """Offset-based paging; the token is the next offset (opaque to clients). Without
    pageSize (or with 0) the server picks the page size, as every API here documents."""
    for param in ("pageSize", "pageToken"):
        raw = request.query_params.get(param) or "0"
        if not raw.lstrip("-").isdigit() or int(raw) < 0:
            # A token this server never issued (e.g. "-1") is refused, as Google does.
            raise invalid(f"{param}: '{raw}' is invalid.", param)
    size = int(request.query_params.get("pageSize") or 100)
    start = int(request.query_params.get("pageToken") or 0)
    size = max(1, min(size, 1000))
    chunk = items[start:start + size]
    nxt = str(start + size) if start + size < len(items) else None
    return chunk, nxt


def paged(items: list[Any], request: Request, key: str, render: Callable[[Any], Any] = lambda x: x,
          **extra: Any) -> dict[str, Any]:
    """A list response: ``{key: [one page, rendered], **extra, "nextPageToken"?}``."""
    chunk, nxt = _page(items, request)
    out: dict[str, Any] = {key: [render(x) for x in chunk], **extra}
    if nxt:
        out["nextPageToken"] = nxt
    return out
