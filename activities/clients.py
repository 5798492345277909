"""One factory for every Google client the activities use, built from ``Settings``.

The factory is injected into the activity classes (no module globals), so a worker, a
test or a second backend can hand each class the clients it should talk to.

Retries: the libraries' own retries are switched off everywhere (``retry=None`` on GAPIC
calls, ``num_retries=0`` on discovery ``execute``) so Temporal's RetryPolicy is the only
retry and an attempt's heartbeat/checkpoint tells the truth about what was sent.
"""

from __future__ import annotations

import threading
from typing import Any

import google.auth
import google_auth_httplib2
import httplib2
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import run_v2, vpcaccess_v1
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from activities.settings import Settings

_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
# Per-request timeout for discovery (httplib2) calls; an attempt that hangs longer is a
# transport error and Temporal retries it.
HTTP_TIMEOUT_S = 60
# GAPIC calls get an explicit timeout too (retry=None removes the library's deadline).
GAPIC_TIMEOUT_S = 60.0

# The discovery services the activities use, with the version each one is built at.
_DISCOVERY_VERSIONS = {
    "vpcaccess": "v1",
    "sqladmin": "v1",
    "compute": "v1",
    "secretmanager": "v1",
    "monitoring": "v3",
    "redis": "v1",
}


class GcpClients:
    """Builds clients for the configured backend (simulator or real Google Cloud)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None
        self._gapic: dict[str, Any] = {}

    # -- credentials -----------------------------------------------------------------

    def credentials(self) -> Credentials:
        """Anonymous for the simulator (it never returns 401); ADC for real GCP."""
        with self._lock:
            if self._credentials is None:
                if self.settings.is_sim:
                    self._credentials = AnonymousCredentials()
                else:
                    self._credentials, _project = google.auth.default(scopes=_SCOPES)
            return self._credentials

    def _client_options(self, service_path: str = "") -> ClientOptions | None:
        if not self.settings.is_sim:
            return None  # default googleapis.com endpoints
        return ClientOptions(api_endpoint=self.settings.gcp_endpoint.rstrip("/") + service_path)

    # -- GAPIC (REST transport): Cloud Run v2, VPC Access reads -----------------------

    def _cached_gapic(self, key: str, factory: Any) -> Any:
        # GAPIC REST clients hold a requests session, which is safe to share between the
        # worker's threads for independent requests; building one per call would leak them.
        with self._lock:
            client = self._gapic.get(key)
        if client is None:
            client = factory(credentials=self.credentials(), transport="rest",
                             client_options=self._client_options())
            with self._lock:
                client = self._gapic.setdefault(key, client)
        return client

    def run_services(self) -> run_v2.ServicesClient:
        return self._cached_gapic("run_services", run_v2.ServicesClient)

    def run_revisions(self) -> run_v2.RevisionsClient:
        return self._cached_gapic("run_revisions", run_v2.RevisionsClient)

    def vpc_access(self) -> vpcaccess_v1.VpcAccessServiceClient:
        return self._cached_gapic("vpc_access", vpcaccess_v1.VpcAccessServiceClient)

    # -- discovery: vpcaccess patch + operations, sqladmin, compute, secrets, monitoring,
    #    redis

    def discovery(self, api: str) -> Any:
        """A fresh discovery client: httplib2 is not thread-safe, so one per call/thread.

        Building from the bundled static document is cheap (a few ms, no network).
        """
        version = _DISCOVERY_VERSIONS[api]
        # Compute's discovery base includes its service path; the others are at the root.
        service_path = "/compute/v1/" if api == "compute" else ""
        options = self._client_options(service_path)
        http = google_auth_httplib2.AuthorizedHttp(
            self.credentials(), http=httplib2.Http(timeout=HTTP_TIMEOUT_S))
        return discovery.build(
            api, version, http=http, client_options=options,
            static_discovery=True, cache_discovery=False,
        )


def execute(request: Any) -> Any:
    """Run a discovery request once: Temporal's RetryPolicy owns retries."""
    return request.execute(num_retries=0)


def or_none_on_404(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, or None when the resource does not exist (discovery or gapic 404)."""
    try:
        return fn(*args)
    except HttpError as err:
        if err.status_code == 404:
            return None
        raise
    except gexc.NotFound:
        return None


def get_or_none(request: Any) -> dict[str, Any] | None:
    """Execute a discovery ``get``; None on 404."""
    return or_none_on_404(execute, request)


def short(name: str) -> str:
    """The last segment of a resource name or URL."""
    return name.rstrip("/").rsplit("/", 1)[-1] if name else ""


def int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def list_all(collection: Any, request: Any, field: str) -> list[dict[str, Any]]:
    """Every item of a paged discovery ``list`` (the client's ``list_next`` follows the
    page tokens), each page fetched once like ``execute``."""
    items: list[dict[str, Any]] = []
    while request is not None:
        page = execute(request)
        items += page.get(field, [])
        request = collection.list_next(request, page)
    return items
