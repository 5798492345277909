"""Sending a verified person's action to a run: the one path the HTTP API and Slack share.

The caller has already proven who ``person`` is (approval/oidc.py, or Slack's signed
request). This module binds that identity to one exact run with a signed envelope
(runbook/envelope.py) and sends the run's update; the worker checks the envelope in the
update's validator, so a refusal comes back here as the run's own reason.

Each action runs in a span, ``approval <act>``, beneath the current one (the HTTP server
span, whose parent is the caller's, e.g. ``runbook start`` in the CLI): the client's
TracingInterceptor then puts the workflow start or update under it, so the run's trace
is one from the CLI to the worker's steps. The span names the action, the run, the gate
and the kind of issuer that proved the person; never a token nor the envelope.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, get_args

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from runbook import messages as m
from runbook.envelope import EnvelopeSigner, Via, new_claims
from workflows import search_attributes as sa

Act = Literal["approve", "reject", "decide", "abort", "pause", "resume"]
DECISIONS = get_args(m.Decision)
UPDATE_TIMEOUT_S = 60
ACTION_SPAN_PREFIX = "approval "


class ActionRefused(Exception):
    """The action was not carried out: ``reason`` for the person, ``status_code`` for HTTP
    (404 no such run, 409 refused by the run or the run is closed, 503 Temporal cannot be
    reached, 504 the run did not answer)."""

    def __init__(self, reason: str, status_code: int = 409) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class Person(BaseModel):
    """Someone whose identity an issuer proved: ``identity`` in its canonical spelling
    (runbook/identity.py), ``idp`` the OIDC issuer URL or ``slack:<team>``."""

    model_config = ConfigDict(frozen=True)

    identity: str = Field(min_length=1, max_length=200)
    idp: str = Field(min_length=1, max_length=300)

    @property
    def issuer_kind(self) -> str:
        """"slack", "dev" (the dev stack's own issuer) or "oidc": what proved the person."""
        # Imported here: approval.dev_issuer -> approval.oidc imports this module.
        from approval.dev_issuer import DEV_ISSUER_PATH

        if self.idp.startswith("slack:"):
            return "slack"
        if self.idp.rstrip("/").endswith(DEV_ISSUER_PATH):
            return "dev"
        return "oidc"


class ActionRequest(BaseModel):
    """What a person asks a run to do. Fields a given ``act`` needs are required for it."""

    model_config = ConfigDict(extra="forbid")

    act: Act
    workflow_id: str = Field(min_length=1, max_length=300)
    gate: str | None = Field(default=None, max_length=m.MAX_GATE_ID)
    plan_digest: str | None = Field(default=None, max_length=m.MAX_DIGEST)
    decision: str | None = None
    reason: str = Field(default="", max_length=m.MAX_TEXT)
    comment: str = Field(default="", max_length=m.MAX_TEXT)

    @model_validator(mode="after")
    def _fields_for_act(self) -> "ActionRequest":
        if self.act in ("approve", "reject", "decide") and not self.gate:
            raise ValueError(f"gate: required to {self.act}")
        if self.act == "approve" and not self.plan_digest:
            # The digest binds the approval to the plan the person saw.
            raise ValueError("plan_digest: required to approve (the digest of the plan you reviewed)")
        if self.act == "decide" and self.decision not in DECISIONS:
            raise ValueError(f"decision: must be one of {', '.join(DECISIONS)}")
        return self


def _update_of(req: ActionRequest, who: str, envelope: str) -> tuple[str, dict[str, Any], type | None]:
    """(update name, payload, result type) for the run, in the contract's shapes."""
    if req.act == "approve":
        return m.UPDATE_APPROVE, {"gate": req.gate, "approver": who, "plan_digest": req.plan_digest,
                                  "comment": req.comment, "envelope": envelope}, m.GateAck
    if req.act == "reject":
        return m.UPDATE_REJECT, {"gate": req.gate, "approver": who, "reason": req.reason,
                                 "envelope": envelope}, m.GateAck
    if req.act == "decide":
        return m.UPDATE_DECIDE, {"gate": req.gate, "decision": req.decision, "by": who,
                                 "reason": req.reason, "envelope": envelope}, m.GateAck
    name = {"abort": m.UPDATE_ABORT, "pause": m.UPDATE_PAUSE, "resume": m.UPDATE_RESUME}[req.act]
    # Result left untyped: the JSON the run returns is passed on as it is.
    return name, {"by": who, "reason": req.reason, "envelope": envelope}, None


def _as_json(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return dict(value)
    return {"result": value}


def _unreachable(err: BaseException) -> ActionRefused | None:
    """503 when Temporal cannot be reached (a lazy client's first connect fails with a
    RuntimeError), so the caller knows to retry rather than that the run refused."""
    if isinstance(err, RPCError) and err.status in (RPCStatusCode.UNAVAILABLE,
                                                    RPCStatusCode.DEADLINE_EXCEEDED):
        return ActionRefused(f"the Temporal server did not answer ({err.message}); try again", 503)
    if isinstance(err, RuntimeError) and "Failed client connect" in str(err):
        return ActionRefused("the Temporal server cannot be reached; try again", 503)
    return None


def _innermost_message(err: BaseException) -> str:
    while getattr(err, "cause", None) is not None:
        err = err.cause  # type: ignore[assignment]
    return getattr(err, "message", None) or str(err)


@contextmanager
def _action_span(tracer: trace.Tracer, person: Person, act: str, workflow_id: str,
                 gate: str | None, via: Via) -> Iterator[Span]:
    """``approval <act>`` around one action; a refusal ends it ERROR with the reason."""
    attributes = {"runbook.action": act, "runbook.workflow_id": workflow_id,
                  "runbook.issuer_kind": person.issuer_kind, "runbook.via": via}
    if gate:
        attributes["runbook.gate"] = gate
    # The refusal is recorded below, as a status: not as an exception with its traceback.
    with tracer.start_as_current_span(ACTION_SPAN_PREFIX + act, kind=SpanKind.INTERNAL,
                                      attributes=attributes, record_exception=False,
                                      set_status_on_exception=False) as span:
        try:
            yield span
        except ActionRefused as err:
            span.set_attribute("runbook.refused_status", err.status_code)
            span.set_status(Status(StatusCode.ERROR, f"refused ({err.status_code}): {err.reason}"))
            raise
        except Exception as err:
            span.record_exception(err)
            span.set_status(Status(StatusCode.ERROR, type(err).__name__))
            raise


class ActionSender:
    """Signs and sends actions for verified people. ``client`` uses the pydantic data
    converter (as cli/client.py connects) and, for one trace across the service, the
    tracing interceptors (observability/tracing.py); ``signer`` holds the service's
    private key. ``tracer``: default the global provider's (a test passes its own)."""

    def __init__(self, client: Client, signer: EnvelopeSigner,
                 task_queue: str = m.DEFAULT_TASK_QUEUE,
                 tracer: trace.Tracer | None = None) -> None:
        self._client, self._signer, self._task_queue = client, signer, task_queue
        self._tracer = tracer or trace.get_tracer(__name__)

    async def _current_run(self, workflow_id: str) -> WorkflowHandle:
        """A handle on the run now behind ``workflow_id``, pinned to its run id so the update
        (and the envelope) cannot land on a later run that reuses the id."""
        try:
            desc = await self._client.get_workflow_handle(workflow_id).describe()
        except (RPCError, RuntimeError) as err:
            if isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND:
                raise ActionRefused(f"no run {workflow_id}", 404) from None
            raise _unreachable(err) or err
        if desc.status != WorkflowExecutionStatus.RUNNING:
            status = desc.status.name if desc.status else "closed"
            raise ActionRefused(f"run {workflow_id} is {status}: it takes no more actions", 409)
        return self._client.get_workflow_handle(workflow_id, run_id=desc.run_id)

    async def send(self, person: Person, req: ActionRequest, via: Via) -> dict[str, Any]:
        """The run's answer as JSON plus ``identity``; ActionRefused with the run's reason."""
        with _action_span(self._tracer, person, req.act, req.workflow_id, req.gate, via):
            return await self._send(person, req, via)

    async def _send(self, person: Person, req: ActionRequest, via: Via) -> dict[str, Any]:
        handle = await self._current_run(req.workflow_id)
        claims = new_claims(sub=person.identity, idp=person.idp, act=req.act, wid=req.workflow_id,
                            rid=handle.run_id, gate=req.gate,
                            digest=req.plan_digest if req.act == "approve" else None,
                            decision=req.decision if req.act == "decide" else None, via=via)
        update, payload, result_type = _update_of(req, person.identity,
                                                  self._signer.sign(claims))
        kwargs = {} if result_type is None else {"result_type": result_type}
        try:
            # With no worker polling, an update waits forever: give up and say why.
            result = await asyncio.wait_for(handle.execute_update(update, payload, **kwargs),
                                            UPDATE_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ActionRefused(f"run {req.workflow_id} did not answer within {UPDATE_TIMEOUT_S} s; "
                                "is its worker running?", 504) from None
        except WorkflowUpdateFailedError as err:
            # A validator's or handler's ApplicationError: its message is the run's reason.
            raise ActionRefused(_innermost_message(err), 409) from None
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:  # closed between describe and update
                raise ActionRefused(f"run {req.workflow_id} is no longer running", 409) from None
            raise _unreachable(err) or err
        return _as_json(result) | {"identity": person.identity}

    async def start_run(self, person: Person, request: dict[str, Any],
                        workflow_id: str | None = None, via: Via = "api") -> dict[str, Any]:
        """Start a RemediationWorkflow requested by ``person``. ``request`` is already
        validated (runbook.request.request_problems); it gets ``requested_by`` and the
        ``requester_proof`` envelope (act=start, no run id yet) the worker verifies."""
        incident = str(request.get("incident_id", ""))
        wid = workflow_id or f"remediation-{incident}-{secrets.token_hex(3)}"
        with _action_span(self._tracer, person, "start", wid, None, via) as span:
            span.set_attribute("runbook.incident", incident)
            return await self._start_run(person, request, wid, incident, via)

    async def _start_run(self, person: Person, request: dict[str, Any], wid: str,
                         incident: str, via: Via) -> dict[str, Any]:
        claims = new_claims(sub=person.identity, idp=person.idp, act="start", wid=wid, via=via)
        body = dict(request) | {"requested_by": person.identity,
                                "requester_proof": self._signer.sign(claims)}
        try:
            handle = await self._client.start_workflow(
                m.WORKFLOW_TYPE, body, id=wid, task_queue=self._task_queue,
                search_attributes=TypedSearchAttributes([SearchAttributePair(sa.INCIDENT, incident)]),
                static_summary=f"Remediation of incident {incident}, requested by {person.identity}",
            )
        except WorkflowAlreadyStartedError:
            raise ActionRefused(f"a run with id {wid} already exists", 409) from None
        except (RPCError, RuntimeError) as err:
            raise _unreachable(err) or err
        return {"workflow_id": wid, "run_id": handle.first_execution_run_id,
                "requested_by": person.identity}
