"""Small request/response helpers shared by the API routers."""
from __future__ import annotations

import json
from typing import Any, Callable

from fastapi import Request
from starlette.requests import HTTPConnection

from .context import Sim
from .errors import invalid


def get_sim(conn: HTTPConnection) -> Sim:
    """The simulator context of the app serving this request (or WebSocket)."""
    return conn.app.state.sim


async def read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise invalid(f"Invalid JSON payload received. {exc}") from exc
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected an object.")
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
