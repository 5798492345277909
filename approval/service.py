"""The approval service's HTTP API: a verified person starts runs and acts on them.

Every /v1 endpoint needs ``Authorization: Bearer <OIDC ID token>`` (approval/oidc.py);
the action itself goes through approval/actions.py, which signs the envelope the worker
checks. Errors are ``{"detail": "<reason>"}``: 401 bad or missing token, 404 no such run,
409 the run refused (its own reason), 422 a bad body (each bad field named).

Traces: OpenTelemetry's FastAPI instrumentation opens a server span per request (not for
/healthz, which probes call every few seconds), continuing the caller's trace from the
W3C ``traceparent`` header the CLI sends (cli/service_client.py); the action's own span
(approval/actions.py) and the Temporal call beneath it follow in the same trace. Request
headers are not recorded, so the bearer token never reaches a span.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import TracerProvider
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from temporalio.service import RPCError

from approval.actions import ActionRefused, ActionRequest, ActionSender, Person
from approval.config import ServiceSettings
from approval.oidc import TokenRefused, TokenVerifier
from runbook import messages as m
from runbook.identity import normalize_identity
from runbook.request import request_problems

log = logging.getLogger(__name__)

# The CLI says it is the caller, so the envelope (and the audit) show "cli", not "api".
VIA_HEADER = "X-Runbook-Via"
# Not traced: liveness probes would bury the requests people made.
UNTRACED_PATHS = "/healthz$"
_WWW_AUTHENTICATE = "WWW-Authenticate"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartBody(_Body):
    request: dict[str, Any]
    workflow_id: str | None = Field(default=None, min_length=1, max_length=200,
                                    pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


class ApproveBody(_Body):
    gate: str = Field(min_length=1, max_length=m.MAX_GATE_ID)
    plan_digest: str = Field(min_length=1, max_length=m.MAX_DIGEST)
    comment: str = Field(default="", max_length=m.MAX_TEXT)


class RejectBody(_Body):
    gate: str = Field(min_length=1, max_length=m.MAX_GATE_ID)
    reason: str = Field(max_length=m.MAX_TEXT)


class DecideBody(_Body):
    gate: str = Field(min_length=1, max_length=m.MAX_GATE_ID)
    decision: m.Decision
    reason: str = Field(default="", max_length=m.MAX_TEXT)


class AbortBody(_Body):
    reason: str = Field(max_length=m.MAX_TEXT)


class PauseBody(_Body):
    reason: str = Field(default="", max_length=m.MAX_TEXT)


class Unauthenticated(Exception):
    def __init__(self, reason: str, status_code: int = 401, *, token_sent: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.status_code, self.token_sent = reason, status_code, token_sent


class BadBody(Exception):
    """A body that parsed but makes no sense (fields named in ``reason``) -> 422."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthenticated("missing bearer token: send Authorization: Bearer <OIDC ID token> "
                              "(`runbook login` gets one)", token_sent=False)
    if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
        raise Unauthenticated("malformed Authorization header: expected 'Bearer <token>'")
    return token.strip()


def _via(request: Request) -> Literal["cli", "api"]:
    # "slack" is only ever set by the Slack router, which checks Slack's signature.
    return "cli" if request.headers.get(VIA_HEADER, "").lower() == "cli" else "api"


def _field_errors(err: RequestValidationError) -> str:
    problems = []
    for e in err.errors()[:5]:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        problems.append(f"{'.'.join(loc) or 'body'}: {e.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid body"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Unauthenticated)
    async def unauthenticated(_: Request, err: Unauthenticated) -> JSONResponse:
        # RFC 6750 §3: no error code when no token was sent; invalid_token when one was.
        challenge = 'Bearer error="invalid_token"' if err.token_sent else "Bearer"
        headers = {_WWW_AUTHENTICATE: challenge} if err.status_code == 401 else {}
        return JSONResponse({"detail": err.reason}, status_code=err.status_code, headers=headers)

    @app.exception_handler(ActionRefused)
    async def refused(_: Request, err: ActionRefused) -> JSONResponse:
        return JSONResponse({"detail": err.reason}, status_code=err.status_code)

    @app.exception_handler(BadBody)
    async def bad_body(_: Request, err: BadBody) -> JSONResponse:
        return JSONResponse({"detail": err.reason}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _field_errors(err)}, status_code=422)

    @app.exception_handler(RPCError)
    async def temporal_down(_: Request, err: RPCError) -> JSONResponse:
        log.warning("Temporal refused or failed: %s", err.message or err)
        return JSONResponse({"detail": f"the Temporal server failed the request: "
                                       f"{(err.message or str(err))[:300]}"}, status_code=503)


def _start_request(body: StartBody, person: Person) -> dict[str, Any]:
    """The validated request to start, ``requested_by`` set to the caller."""
    raw = dict(body.request)
    if "requester_proof" in raw:
        raise BadBody("request.requester_proof: set by the service; leave it out")
    claimed = raw.get("requested_by")
    if claimed not in (None, ""):
        try:
            same = normalize_identity(claimed, "request.requested_by") == person.identity
        except ValueError as err:
            raise BadBody(str(err)) from None
        if not same:
            raise BadBody(f"request.requested_by: names {str(claimed)[:100]!r}, but your token "
                          f"proves you are {person.identity!r}; leave it out")
    raw["requested_by"] = person.identity
    model, problems = request_problems(raw)
    if problems or model is None:
        raise BadBody("; ".join(f"request.{p.field}: {p.reason}" for p in problems[:10]))
    # The proof is the sender's to sign, once the workflow id is known.
    return model.model_dump(mode="json", exclude={"requester_proof"})


def create_app(settings: ServiceSettings, sender: ActionSender, token_verifier: TokenVerifier,
               *, extra_routers: Sequence[APIRouter] = (),
               tracer_provider: TracerProvider | None = None) -> FastAPI:
    """The service's app. ``tracer_provider``: default the global one (observability/
    tracing.py configures it); a test passes its own."""
    app = FastAPI(title="runbook approval service", docs_url=None, redoc_url=None)
    app.state.settings = settings
    _install_error_handlers(app)

    async def person(request: Request) -> Person:
        token = _bearer(request)
        try:
            return await token_verifier.verify_async(token)
        except TokenRefused as err:
            raise Unauthenticated(err.reason, err.status_code) from None

    async def perform(who: Person, request: Request, **fields: Any) -> dict[str, Any]:
        try:
            req = ActionRequest(**fields)
        except ValidationError as err:
            raise BadBody(m.describe_validation_error(err)) from None
        try:
            result = await sender.send(who, req, _via(request))
        except ActionRefused as err:
            log.info("%s by %s on %s refused (%s): %s", req.act, who.identity, req.workflow_id,
                     err.status_code, err.reason)
            raise
        log.info("%s by %s on %s accepted", req.act, who.identity, req.workflow_id)
        return result

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/v1/whoami")
    async def whoami(who: Person = Depends(person)) -> dict[str, str]:
        return {"identity": who.identity, "idp": who.idp}

    @app.post("/v1/runs", status_code=201)
    async def start(body: StartBody, request: Request,
                    who: Person = Depends(person)) -> dict[str, Any]:
        started = await sender.start_run(who, _start_request(body, who), body.workflow_id,
                                         via=_via(request))
        log.info("run %s started by %s", started.get("workflow_id"), who.identity)
        return started

    @app.post("/v1/runs/{workflow_id}/approve")
    async def approve(workflow_id: str, body: ApproveBody, request: Request,
                      who: Person = Depends(person)) -> dict[str, Any]:
        return await perform(who, request, act="approve", workflow_id=workflow_id,
                             **body.model_dump())

    @app.post("/v1/runs/{workflow_id}/reject")
    async def reject(workflow_id: str, body: RejectBody, request: Request,
                     who: Person = Depends(person)) -> dict[str, Any]:
        return await perform(who, request, act="reject", workflow_id=workflow_id,
                             **body.model_dump())

    @app.post("/v1/runs/{workflow_id}/decide")
    async def decide(workflow_id: str, body: DecideBody, request: Request,
                     who: Person = Depends(person)) -> dict[str, Any]:
        return await perform(who, request, act="decide", workflow_id=workflow_id,
                             **body.model_dump())

    @app.post("/v1/runs/{workflow_id}/abort")
    async def abort(workflow_id: str, body: AbortBody, request: Request,
                    who: Person = Depends(person)) -> dict[str, Any]:
        return await perform(who, request, act="abort", workflow_id=workflow_id,
                             reason=body.reason)

    @app.post("/v1/runs/{workflow_id}/pause")
    async def pause(workflow_id: str, request: Request, body: PauseBody | None = None,
                    who: Person = Depends(person)) -> dict[str, Any]:
        return await perform(who, request, act="pause", workflow_id=workflow_id,
                             reason=(body or PauseBody()).reason)

    @app.post("/v1/runs/{workflow_id}/resume")
    async def resume(workflow_id: str, request: Request, body: PauseBody | None = None,
                     who: Person = Depends(person)) -> dict[str, Any]:
        return await perform(who, request, act="resume", workflow_id=workflow_id,
                             reason=(body or PauseBody()).reason)

    for router in extra_routers:
        app.include_router(router)
    # One server span per request; "send"/"receive" spans per ASGI message add nothing here.
    FastAPIInstrumentor.instrument_app(app, tracer_provider=tracer_provider,
                                       excluded_urls=UNTRACED_PATHS,
                                       exclude_spans=["receive", "send"])
    return app
