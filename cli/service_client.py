"""The approval service's HTTP API, as the CLI calls it (approval/: OIDC bearer token in,
signed envelope to the run out).

Every failure becomes a CliError that says what to do next; the bearer token is sent in
the Authorization header only and never appears in an error, a log or the output.

Traces: OpenTelemetry's httpx instrumentation wraps each request in a client span and
sends the current trace context as a W3C ``traceparent`` header, so the service's work
(and the run it starts or updates) joins the caller's trace, e.g. ``runbook start``'s.
Nothing is sent when tracing is off (no current span).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import TracerProvider

from cli.client import CliError
from runbook.urls import endpoint_url_problem

LOGIN_HINT = "run `runbook login` (e.g. `runbook login --dev-user <you>` against ./dev up)"
DIRECT_HINT = "or pass --direct to send a claimed (unverified) identity straight to the run"
# What each action posts to: POST /v1/runs/{workflow_id}/<path>.
ACTIONS = ("approve", "reject", "decide", "abort", "pause", "resume")


class ServiceClient:
    """One approval service; ``token`` is the OIDC ID token (None for the dev issuer).
    ``tracer_provider``: default the global one (a test passes its own)."""

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 60.0,
                 transport: httpx.BaseTransport | None = None,
                 tracer_provider: TracerProvider | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        problem = endpoint_url_problem(self.base_url)
        if token and problem:
            # The bearer token proves who you are for an hour: never over plain http to
            # another machine, nor to a metadata or link-local address.
            raise CliError(f"approval service URL {self.base_url}: {problem}",
                           "use the service's https URL (http only to localhost)")
        # The service records the caller as "cli" in the envelope (and so in the audit).
        headers = {"X-Runbook-Via": "cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s,
                                  transport=transport)
        HTTPXClientInstrumentor.instrument_client(self._http, tracer_provider=tracer_provider)

    def __enter__(self) -> "ServiceClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._http.close()

    # --- calls ------------------------------------------------------------------------

    def dev_token(self, user: str) -> dict[str, Any]:
        """A token from the service's dev issuer (./dev up only): {"id_token", "expires_in"}."""
        resp = self._send("POST", "/dev-issuer/token", {"user": user}, what="the dev issuer")
        if resp.status_code == 404:
            raise CliError(f"the approval service at {self.base_url} has no dev issuer "
                           "(it runs one only with RUNBOOK_DEV_ISSUER=1, as ./dev up starts it)",
                           "log in with your identity provider: `runbook login --id-token-command "
                           "'gcloud auth print-identity-token'` or --token-file")
        return self._json(resp, "the dev issuer")

    def whoami(self) -> dict[str, Any]:
        """{"identity", "idp"}: who the service takes the token's bearer to be."""
        return self._json(self._send("GET", "/v1/whoami", None, what="whoami"), "whoami")

    def start(self, request: dict[str, Any], workflow_id: str | None) -> dict[str, Any]:
        """{"workflow_id", "run_id", "requested_by"} of the run the service started."""
        body = {"request": request, "workflow_id": workflow_id}
        return self._json(self._send("POST", "/v1/runs", body, what="start"), "start",
                          workflow_id)

    def act(self, workflow_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send one action to a run; the run's answer (an ack) as JSON."""
        if action not in ACTIONS:
            raise ValueError(f"action: must be one of {', '.join(ACTIONS)}, not {action!r}")
        path = f"/v1/runs/{quote(workflow_id, safe='')}/{action}"
        return self._json(self._send("POST", path, body, what=action), action, workflow_id)

    # --- plumbing ---------------------------------------------------------------------

    def _send(self, method: str, path: str, body: dict[str, Any] | None, what: str) -> httpx.Response:
        try:
            return self._http.request(method, path, json=body)
        except httpx.ConnectError as err:
            raise CliError(f"cannot reach the approval service at {self.base_url} "
                           f"({_reason(err)})",
                           "start it (`./dev up` runs it on port 8095), or point the CLI at the "
                           "right one: `runbook login --service URL` or RUNBOOK_APPROVAL_URL; "
                           + DIRECT_HINT) from err
        except httpx.TimeoutException as err:
            raise CliError(f"the approval service at {self.base_url} did not answer the {what} "
                           f"in time", "check the service's log; the run may still have "
                           "received it: look with `runbook status ID`") from err
        except httpx.HTTPError as err:
            raise CliError(f"the request to the approval service at {self.base_url} failed "
                           f"({_reason(err)})") from err

    def _json(self, resp: httpx.Response, what: str, workflow_id: str | None = None) -> dict[str, Any]:
        detail = _detail(resp)
        code = resp.status_code
        if code == 401:
            raise CliError(f"login expired or refused: run `runbook login` (the service at "
                           f"{self.base_url} said: {detail})", LOGIN_HINT)
        if code == 403:
            raise CliError(f"the approval service refused the {what}: {detail}")
        if code == 404:
            subject = f"run {workflow_id!r}" if workflow_id else f"{what} endpoint"
            raise CliError(f"the approval service at {self.base_url} knows no {subject} "
                           f"({detail})", "check the id with `runbook list`" if workflow_id
                           else f"is {self.base_url} an approval service?")
        if code == 409:
            raise CliError(f"refused: {detail}",
                           f"see where the run is: `runbook status {workflow_id}`" if workflow_id
                           else "")
        if code == 422:
            raise CliError(f"the approval service found the {what} invalid: {detail}",
                           "fix the option(s) named above and run the command again")
        if code >= 400:
            raise CliError(f"the approval service at {self.base_url} failed the {what} "
                           f"(HTTP {code}: {detail})", "look at the approval service's log")
        try:
            data = resp.json()
        except ValueError as err:
            raise CliError(f"the approval service at {self.base_url} answered the {what} with "
                           f"something that is not JSON (HTTP {code})",
                           f"is {self.base_url} an approval service?") from err
        if not isinstance(data, dict):
            raise CliError(f"the approval service answered the {what} with a JSON "
                           f"{type(data).__name__}, not an object")
        return data


def _reason(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text.splitlines()[0][:200]


def _detail(resp: httpx.Response) -> str:
    """FastAPI's {"detail": ...}: a string, or a list of field errors (422)."""
    try:
        detail = resp.json().get("detail")
    except (ValueError, AttributeError):
        return resp.text[:300] or resp.reason_phrase
    if isinstance(detail, list):
        parts = []
        for problem in detail[:5]:
            if isinstance(problem, dict):
                loc = ".".join(str(p) for p in problem.get("loc", []) if p != "body")
                parts.append(f"{loc}: {problem.get('msg', '')}" if loc else str(problem.get("msg")))
            else:
                parts.append(str(problem))
        return "; ".join(parts)
    return str(detail)[:600] if detail is not None else resp.reason_phrase
