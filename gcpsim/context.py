"""The simulator's shared context: store + clock + a few cross-API helpers.

Routers reach it as ``request.app.state.sim``. It deliberately holds no resource logic;
that lives in the per-API modules.
"""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from .clock import Clock, iso
from .errors import not_found
from .store import Store

# Who the simulator reports as the caller (lastModifier, operation user, mutationRecord):
# clients connect with anonymous credentials.
ACTOR = "anonymous@gcpsim.local"


class Sim:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # ---- time ------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def iso(self, t: float | None = None) -> str:
        return iso(self.now() if t is None else t)

    # ---- projects --------------------------------------------------------------
    def projects(self) -> list[dict[str, str]]:
        return self.store.meta_get("world:projects", [])

    def project_id(self, project: str) -> str:
        """Accept a project id or number in a URL; resources are stored under the id."""
        for p in self.projects():
            if project in (p["projectId"], p["projectNumber"]):
                return p["projectId"]
        return project

    def project_number(self, project: str) -> str:
        for p in self.projects():
            if project in (p["projectId"], p["projectNumber"]):
                return p["projectNumber"]
        return project

    def require(self, api: str, name: str, what: str) -> dict[str, Any]:
        """The stored resource, or the API's 404 naming ``what``."""
        res = self.store.get(api, name)
        if res is None:
            raise not_found(what)
        return res

    def app_params(self) -> dict[str, Any]:
        return self.store.meta_get("world:app", {})

    def dns(self) -> dict[str, str]:
        """The world's DNS: host name -> IP address."""
        return self.store.meta_get("world:dns", {}) or {}

    # ---- mutation log ----------------------------------------------------------
    def log(
        self,
        api: str,
        method: str,
        resource: str,
        before: Any,
        after: Any,
        *,
        at: float | None = None,
        request_id: str | None = None,
        operation: str | None = None,
    ) -> int:
        return self.store.log_mutation(
            {
                "time": self.iso(at),
                "api": api,
                "method": method,
                "resource": resource,
                "request_id": request_id,
                "operation": operation,
                "before": public(before),
                "after": public(after),
            }
        )


def public(record: Any) -> Any:
    """A stored record without the simulator's private bookkeeping (the ``_sim`` key)."""
    if isinstance(record, dict):
        return {k: v for k, v in record.items() if k != "_sim"}
    return record


def digest(obj: Any, n: int = 12) -> str:
    """A short, stable content hash (etags, fingerprints, deterministic suffixes)."""
    raw = json.dumps(obj, sort_keys=True, default=str).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).decode()[:n]


def numeric_id(*parts: Any) -> str:
    """A stable 19-digit numeric id (Compute and Monitoring use numeric ids)."""
    h = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return str(10**18 + int(h[:16], 16) % (9 * 10**18))
