"""The simulated application, as seen through the load balancer.

``/health``, ``/health/database``, ``/health/redis``, ``/auth/health`` and the ``/ws`` WebSocket answer
according to :mod:`gcpsim.health_model`. The 503 share is produced exactly and without
randomness by error diffusion: each endpoint accumulates its 503 rate per request and
fails whenever the accumulator reaches 1, so N requests yield floor(N x rate) 503s. The
accumulators are stored with the world, so a restarted simulator continues the sequence
and a reset starts it afresh.
Latency is reported in ``X-Sim-Latency-Ms`` and slept for latency/speed (capped).
"""
from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from . import faults, health_model, operations
from .context import Sim
from .http_util import get_sim
from .store import Store

router = APIRouter()
MAX_SLEEP_S = 0.2
# A "world:" meta key: world.load (every reset) wipes it with the rest of the world.
DIFFUSION_KEY = "world:diffusion"


def diffuse(store: Store, endpoint: str, rate: float) -> bool:
    """True when this request must fail so that failures track ``rate`` exactly."""
    state = store.meta_get(DIFFUSION_KEY, {})
    acc = round(state.get(endpoint, 0.0) + rate, 9)
    fail = acc >= 1.0
    state[endpoint] = acc - 1.0 if fail else acc
    store.meta_set(DIFFUSION_KEY, state)
    return fail


def _decide(sim: Sim, method: str, path: str) -> tuple[bool, dict[str, Any], list]:
    figures = health_model.compute(sim)
    endpoint = figures["endpoints"].get(path, {"route": None, "rate_503": 1.0, "latency_ms": 0.0})
    route = figures["routes"].get(endpoint["route"], {})
    reasons = list(route.get("reasons", ["endpoint not wired to a service"]))
    redis_problem = figures.get("redis", {}).get("problems", {}).get(endpoint["route"])
    if path.endswith("/redis") and redis_problem:
        reasons.insert(0, f"Redis unreachable: {redis_problem}")
    fault = faults.take(sim.store, "app_503", "app", method, path)
    if fault:
        reasons.insert(0, fault.get("message") or "injected app_503 fault")
        return True, endpoint, reasons
    return diffuse(sim.store, path, endpoint["rate_503"]), endpoint, reasons


async def _answer(request: Request, path: str) -> JSONResponse:
    sim = get_sim(request)
    fail, endpoint, reasons = _decide(sim, request.method, path)
    latency = endpoint["latency_ms"]
    await asyncio.sleep(min(sim.clock.real_seconds(latency / 1000), MAX_SLEEP_S))
    headers = {"X-Sim-Latency-Ms": f"{latency:.1f}"}
    if fail:
        headers["Retry-After"] = "5"
        return JSONResponse({"status": "unhealthy", "error": "Service Unavailable", "reasons": reasons,
                             "latency_ms": latency}, status_code=503, headers=headers)
    return JSONResponse({"status": "healthy", "path": path, "latency_ms": latency}, headers=headers)


@router.get("/health")
async def health(request: Request):
    return await _answer(request, "/health")


@router.get("/health/database")
async def health_database(request: Request):
    return await _answer(request, "/health/database")


@router.get("/health/redis")
async def health_redis(request: Request):
    """200 when the backend reaches Memorystore (instance READY, connector on its network)."""
    return await _answer(request, "/health/redis")


@router.get("/auth/health")
async def auth_health(request: Request):
    return await _answer(request, "/auth/health")


@router.websocket("/ws")
async def websocket(ws: WebSocket):
    """``{"type":"auth","token":...}`` -> ``{"type":"auth_ok"}``; then ``{"type":"chat",
    "message":...}`` -> ``{"type":"ai_response",...}`` when the LB and Cloud Run timeouts
    allow a full AI answer; errors are sent as ``{"type":"error"}`` before closing."""
    sim = get_sim(ws)
    operations.settle(sim)
    await ws.accept()
    try:
        msg = await asyncio.wait_for(ws.receive_json(), timeout=30)
    except (WebSocketDisconnect, asyncio.TimeoutError, ValueError):
        await ws.close(code=1008)
        return
    if not isinstance(msg, dict) or msg.get("type") != "auth":
        await ws.send_json({"type": "error", "error": "first message must be {\"type\":\"auth\",\"token\":...}"})
        await ws.close(code=1008)
        return
    # The HTTP middleware does not see WebSockets: an http fault is taken here. When one
    # fires it answers instead of the app, so no app_503 fault or 503 share is spent on it.
    http_fault = faults.take(sim.store, "http", "app", "GET", "/ws")
    if http_fault:
        await ws.send_json({"type": "error", "code": http_fault["status"],
                            "error": faults.http_error(http_fault).message})
        await ws.close(code=1011)
        return
    fail, endpoint, reasons = _decide(sim, "GET", "/ws")
    await asyncio.sleep(min(sim.clock.real_seconds(endpoint["latency_ms"] / 1000), MAX_SLEEP_S))
    if fail:
        await ws.send_json({"type": "error", "code": 503, "error": "Service Unavailable", "reasons": reasons})
        await ws.close(code=1011)
        return
    if not str(msg.get("token") or "").strip():
        await ws.send_json({"type": "auth_error", "error": "missing token"})
        await ws.close(code=1008)
        return
    await ws.send_json({"type": "auth_ok", "latency_ms": endpoint["latency_ms"]})
    try:
        while True:
            msg = await ws.receive_json()
            kind = msg.get("type") if isinstance(msg, dict) else None
            if kind == "ping":
                await ws.send_json({"type": "pong"})
            elif kind in ("chat", "message"):
                figures = health_model.compute(sim)
                route = figures["routes"].get(endpoint["route"], {})
                if not route.get("ai_response_ok"):
                    await ws.send_json({
                        "type": "error", "code": 504,
                        "error": f"upstream timeout: the connection is cut after "
                                 f"{route.get('websocket_limit_seconds')} s (backend service / Cloud Run "
                                 "timeout) before the AI response completes"})
                    await ws.close(code=1011)
                    return
                await ws.send_json({"type": "ai_response", "content": f"(simulated) answer to: {msg.get('message', '')}"})
            else:
                await ws.send_json({"type": "error", "error": f"unknown message type {kind!r}"})
    except WebSocketDisconnect:
        return
