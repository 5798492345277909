"""Memorystore for Redis v1: instances get/list (read-only).

The runbook only checks that the cache the backend uses exists, is READY and sits on the
network the backend's VPC connector reaches (seed 000 "Validate Redis/Cloud SQL
connectivity", GCP_FIDELITY B1). Paths follow the redis.v1 discovery document:
``GET /v1/{+name}`` and ``GET /v1/{+parent}/instances``.
"""
from __future__ import annotations

from fastapi import APIRouter, Request

from .context import public
from .http_util import get_sim, paged

router = APIRouter()


@router.get("/v1/projects/{p}/locations/{l}/instances")
async def list_instances(p: str, l: str, request: Request):
    sim = get_sim(request)
    # locations/- means every location, as the real API documents for list.
    prefix = f"projects/{sim.project_id(p)}/locations/" + ("" if l == "-" else f"{l}/instances/")
    items = sim.store.list("redis", "instances", prefix)
    return paged(items, request, "instances", public)


@router.get("/v1/projects/{p}/locations/{l}/instances/{i}")
async def get_instance(p: str, l: str, i: str, request: Request):
    sim = get_sim(request)
    name = f"projects/{sim.project_id(p)}/locations/{l}/instances/{i}"
    # Unverified: the exact wording of Memorystore's 404 message.
    return public(sim.require("redis", name, f"Resource '{name}'"))
