"""Small request/response helpers shared by the API routers."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from fastapi import Request

from .errors import invalid


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


def page(items: list[Any], request: Request, default_size: int = 100,
         size_param: str = "pageSize", token_param: str = "pageToken") -> tuple[list[Any], str | None]:
    """Offset-based paging; the token is the next offset (opaque to clients)."""
    try:
        size = int(request.query_params.get(size_param) or default_size)
        start = int(request.query_params.get(token_param) or 0)
    except ValueError as exc:
        raise invalid(f"{token_param} or {size_param} is invalid.", token_param) from exc
    size = max(1, min(size, 1000))
    chunk = items[start:start + size]
    nxt = str(start + size) if start + size < len(items) else None
    return chunk, nxt


async def wait_until(check: Callable[[], bool], real_timeout: float, settle: Callable[[], Any]) -> None:
    """Poll ``check`` (settling due operations first) until true or the timeout passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + real_timeout
    while True:
        settle()
        if check() or loop.time() >= deadline:
            return
        await asyncio.sleep(0.05)
