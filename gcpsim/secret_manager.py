"""Secret Manager v1: secrets get/list, versions get/list and ``:access``.

Metadata reads never carry a payload. ``versions.access`` returns one only for a
version that holds it: a world record may keep the base64 value under its private
``_sim.payload`` key (worker-configured notification secrets in tests). The built-in
world's required secrets are metadata only, so accessing them is a 404 that says so:
the runbook checks those exist and are ENABLED, it never reads them. Secret names use
the project NUMBER.
"""
from __future__ import annotations

import base64
import re
from typing import Any

from fastapi import APIRouter, Request

from .context import Sim, public
from .errors import GoogleError, failed_precondition, invalid, not_found
from .http_util import get_sim, paged

router = APIRouter()
_VERSION = re.compile(r"latest|[1-9]\d*")


def _secret(sim: Sim, p: str, s: str) -> dict[str, Any]:
    name = f"projects/{sim.project_number(p)}/secrets/{s}"
    return sim.require("secretmanager", name, f"Secret [{name}]")


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli, reflected
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32C of ``data``: what Secret Manager reports as ``payload.dataCrc32c``."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


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


def _version(sim: Sim, p: str, s: str, v: str) -> dict[str, Any]:
    if not _VERSION.fullmatch(v):
        raise not_found(f"Secret Version [projects/{p}/secrets/{s}/versions/{v}]")
    secret = _secret(sim, p, s)
    versions = versions_of(sim, secret["name"])
    chosen = versions[:1] if v == "latest" else [x for x in versions if x["name"].endswith(f"/versions/{v}")]
    if not chosen:
        raise not_found(f"Secret Version [{secret['name']}/versions/{v}]")
    return chosen[0]


# Declared before get_version: its ``{v}`` would otherwise also match "1:access".
@router.get("/v1/projects/{p}/secrets/{s}/versions/{v}:access")
async def access_version(p: str, s: str, v: str, request: Request):
    version = _version(get_sim(request), p, s, v)
    if version["state"] != "ENABLED":
        # Google's answer for ``latest`` pointing at a disabled or destroyed version too.
        raise failed_precondition(f"Secret Version [{version['name']}] is in {version['state']} state.")
    data = version.get("_sim", {}).get("payload")
    if data is None:
        raise GoogleError(404, f"Secret Version [{version['name']}] holds no payload in this "
                          "simulator: the built-in world is metadata only.", status="NOT_FOUND",
                          reason="notFound")
    raw = base64.b64decode(data)
    return {"name": version["name"],
            "payload": {"data": base64.b64encode(raw).decode(), "dataCrc32c": str(crc32c(raw))}}


@router.get("/v1/projects/{p}/secrets/{s}/versions/{v}")
async def get_version(p: str, s: str, v: str, request: Request):
    return public(_version(get_sim(request), p, s, v))


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
