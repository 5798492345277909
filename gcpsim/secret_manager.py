"""Secret Manager v1, metadata only: secrets get/list, versions get/list.

There is deliberately no ``:access`` route (any ``…/versions/x:access`` is a 404) and no
payload is ever stored: the runbook may check that a secret exists and that its latest
version is ENABLED, never read a value. Secret names use the project NUMBER.
"""
from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request

from .context import Sim, public
from .errors import invalid, not_found
from .http_util import get_sim, paged

router = APIRouter()
_VERSION = re.compile(r"latest|[1-9]\d*")


def _secret(sim: Sim, p: str, s: str) -> dict[str, Any]:
    name = f"projects/{sim.project_number(p)}/secrets/{s}"
    return sim.require("secretmanager", name, f"Secret [{name}]")


def versions_of(sim: Sim, secret_name: str) -> list[dict[str, Any]]:
    """Versions newest first; ``latest`` is the most recently created, whatever its state."""
    vs = sim.store.list("secretmanager", "versions", secret_name + "/versions/")
    return sorted(vs, key=lambda v: int(v["name"].rsplit("/", 1)[-1]), reverse=True)


@router.get("/v1/projects/{p}/secrets")
async def list_secrets(p: str, request: Request):
    sim = get_sim(request)
    items = sim.store.list("secretmanager", "secrets", f"projects/{sim.project_number(p)}/secrets/")
    return paged(items, request, "secrets", public, totalSize=len(items))


@router.get("/v1/projects/{p}/secrets/{s}")
async def get_secret(p: str, s: str, request: Request):
    return public(_secret(get_sim(request), p, s))


@router.get("/v1/projects/{p}/secrets/{s}/versions/{v}")
async def get_version(p: str, s: str, v: str, request: Request):
    sim = get_sim(request)
    if not _VERSION.fullmatch(v):
        # Also what ".../versions/latest:access" lands on: there is no access method here.
        raise not_found(f"Secret Version [projects/{p}/secrets/{s}/versions/{v}]")
    secret = _secret(sim, p, s)
    versions = versions_of(sim, secret["name"])
    chosen = versions[:1] if v == "latest" else [x for x in versions if x["name"].endswith(f"/versions/{v}")]
    if not chosen:
        raise not_found(f"Secret Version [{secret['name']}/versions/{v}]")
    return public(chosen[0])


@router.get("/v1/projects/{p}/secrets/{s}/versions")
async def list_versions(p: str, s: str, request: Request):
    sim = get_sim(request)
    secret = _secret(sim, p, s)
    versions = versions_of(sim, secret["name"])
    flt = request.query_params.get("filter", "").strip()
    if flt:
        m = re.fullmatch(r"state\s*[:=]\s*\"?([A-Z_]+)\"?", flt)
        if not m:
            raise invalid(f"Invalid filter '{flt}'; this simulator supports state:<STATE>.", "filter")
        versions = [x for x in versions if x["state"] == m.group(1)]
    return paged(versions, request, "versions", public, totalSize=len(versions))
