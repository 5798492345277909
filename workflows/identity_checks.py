"""Verified identities in the run: who sent a message, proven by a signed envelope.

Since ``identity-1`` (runbook/identity_policy.py) a run resolves its identity policy at
start. Under ``verified`` every approve, reject, decide, abort, pause and resume update
must carry the approval service's envelope (runbook/envelope.py), and its validator
checks the signature, freshness and that it was signed for this run, this gate, this
plan digest and this sender. Signals cannot be validated, so under ``verified`` they are
recorded as ignored, with a pointer to the approval service (and to Temporal's Cancel,
which also rolls back, for an emergency).

The public keys are the worker's configuration: ``EnvelopeCheckInterceptor`` hands the
verifier to the run right before each validator. Validators do not run on replay, and a
handler reads the claims without any key (``read_claims``): replay never depends on the
keys, and a key rotated away later does not break an old history.
"""

from __future__ import annotations

from datetime import timedelta
from temporalio import workflow
from temporalio.worker import (
    HandleUpdateInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

with workflow.unsafe.imports_passed_through():
    from runbook import activity_names as act
    from runbook.envelope import EnvelopeError, EnvelopeVerifier, read_claims
    from runbook.identity_policy import (
        UNVERIFIED_REQUESTER_QUORUM,
        IdentityQuery,
        IdentityResolution,
        VerifiedMessage,
    )
    from runbook.request import RemediationRequest
    from runbook.status import GateRecord, RunStatus

from workflows.activity_calls import READ_RETRY, call, retry_policy

UNSIGNED = ("this run takes verified identities (approval.identity: verified) and the "
            "message carries no proof of who sent it: send it through the approval service "
            "(runbook login, then runbook {cli}) or the Slack buttons")
SIGNAL_REFUSED = ("this run takes verified identities: a signal carries no proof of who sent "
                  "it; use the approval service (runbook login, then runbook {cli}){cancel}")
_CANCEL_HINT = "; to stop the run at once, Temporal's Cancel also rolls it back"

class EnvelopeCheckInterceptor(Interceptor):
    """Worker interceptor: gives each run the worker's envelope verifier for its
    validators. Without it (or without keys) a verified run refuses every message."""

    def __init__(self, verifier: EnvelopeVerifier | None) -> None:
        self._verifier = verifier

    def workflow_interceptor_class(
            self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        verifier = self._verifier

        class _Inbound(WorkflowInboundInterceptor):
            def handle_update_validator(self, input: HandleUpdateInput) -> None:
                instance = workflow.instance()
                # By attribute, not isinstance: the sandbox runs its own copy of
                # IdentityChecks, a different class from the one imported here.
                if hasattr(type(instance), "_envelope_verifier"):
                    instance._envelope_verifier = verifier
                super().handle_update_validator(input)

        return _Inbound


class IdentityChecks:
    """Mixin of ``RemediationWorkflow``: the checks its handlers share."""

    _status: RunStatus
    _req: RemediationRequest | None
    _gates: dict[str, GateRecord]
    _identity_on: bool
    # Set by EnvelopeCheckInterceptor before each validator; never used by a handler.
    _envelope_verifier: EnvelopeVerifier | None = None

    def _identity_mode(self) -> str:
        """verified | claimed | pending (identity-1 run still resolving its policy)."""
        if self._status.identity is not None:
            return self._status.identity.mode
        return "pending" if self._identity_on else "claimed"

    def _effective_requester(self) -> str:
        """The requester the two-person rule may trust: under verified, only a proven one."""
        ident = self._status.identity
        if ident is not None and ident.mode == "verified" and not ident.requester_verified:
            return ""
        return self._status.requested_by

    def _sender_problem(self, act_name: str, sender: str, envelope: str | None, *,
                        gate: str | None = None, digest: str | None = None,
                        decision: str | None = None) -> str | None:
        """Why a message's sender is not proven (validators only); None when it is, or
        when the run takes claimed identities."""
        mode = self._identity_mode()
        if mode == "claimed":
            return None
        if mode == "pending":
            return "the run is still resolving its identity policy; send it again in a moment"
        if envelope is None:
            return UNSIGNED.format(cli=act_name)
        if self._envelope_verifier is None:
            return ("this worker cannot verify identities (no approval public keys are "
                    "configured: REMEDIATION_APPROVAL_PUBLIC_KEYS_FILE)")
        try:
            claims = self._envelope_verifier.verify(envelope, workflow.now())
        except EnvelopeError as err:
            return str(err)
        if any(m.proof == claims.jti for m in self._status.verified_messages):
            return "envelope: already used (each counts once); send the action again"
        info = workflow.info()
        if claims.act != act_name:
            return f"envelope: signed for {claims.act!r}, not {act_name!r}"
        if claims.wid != info.workflow_id or claims.rid != info.run_id:
            return (f"envelope: signed for another run ({claims.wid} {claims.rid}), not "
                    f"{info.workflow_id} {info.run_id}")
        if gate is not None and claims.gate != gate:
            return f"envelope: signed for gate {claims.gate!r}, not {gate!r}"
        if claims.sub != sender:
            return f"envelope: proves {claims.sub!r}, but the message is from {sender!r}"
        if act_name == "approve" and digest is None:
            return ("an approval must carry the plan digest it approves (runbook approve "
                    "--digest): under verified identities an approval is bound to the plan")
        if act_name == "approve" and claims.digest != digest:
            return (f"envelope: signed for plan digest {claims.digest!r}, but the message "
                    f"carries {digest!r}")
        if decision is not None and claims.decision != decision:
            return f"envelope: signed for decision {claims.decision!r}, not {decision!r}"
        return None

    def _lone_decision_problem(self, decision: str) -> str | None:
        """Without a verified requester nobody can be excluded, so one person may not
        decide to go on with changes (retry, skip); rolling back is always allowed."""
        ident = self._status.identity
        if ident is None or ident.mode != "verified" or ident.requester_verified \
                or decision == "rollback":
            return None
        return (f"this run has no verified requester, so one person may only roll back at a "
                f"decision gate, not {decision}: nobody can be excluded by the two-person rule")

    def _signal_identity_problem(self, act_name: str) -> str | None:
        """Signals under verified are refused (recorded as ignored): they carry no proof.
        An abort before the policy is known is taken: nothing has been changed yet."""
        mode = self._identity_mode()
        if mode == "claimed" or (mode == "pending" and act_name == "abort"):
            return None
        return SIGNAL_REFUSED.format(cli=act_name,
                                     cancel=_CANCEL_HINT if act_name == "abort" else "")

    def _record_proof(self, act_name: str, sender: str, envelope: str | None, *,
                      gate: str | None = None, decision: str | None = None) -> VerifiedMessage | None:
        """Keep the proof of an accepted message (handlers; no key needed, replay-safe)."""
        if envelope is None or self._identity_mode() != "verified":
            return None
        claims = read_claims(envelope)
        proof = VerifiedMessage(at=workflow.now(), act=act_name, gate=gate, by=sender,
                                idp=claims.idp, via=claims.via, proof=claims.jti,
                                decision=decision)
        self._status.verified_messages.append(proof)
        return proof

    async def _resolve_identity(self) -> str | None:
        """Ask the worker which identities the run takes (recorded in history); apply the
        quorum rule for a run without a verified requester. The refusal, if any."""
        req = self._req
        info = workflow.info()
        # The proof is judged as of the start (the server's time, in history), not of this
        # first task: a worker that was down when the run started must reach the same answer.
        query = IdentityQuery(policy=req.approval.identity, requested_by=req.requested_by,
                              two_person_rule=req.approval.two_person_rule,
                              requester_proof=req.requester_proof,
                              workflow_id=info.workflow_id, started_at=info.workflow_start_time)
        resolution: IdentityResolution = await call(
            act.RESOLVE_IDENTITY, query, IdentityResolution,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=retry_policy(READ_RETRY), summary="Resolve the run's identity policy")
        if resolution.refused:
            return resolution.refused
        self._status.identity = resolution
        if resolution.mode == "verified" and not resolution.requester_verified:
            return self._require_quorum()
        return None

    def _require_quorum(self) -> str | None:
        """No verified requester: no one can be excluded as the requester, so every gate
        needs two distinct verified approvers instead of the two-person rule."""
        need = UNVERIFIED_REQUESTER_QUORUM
        for g in self._gates.values():
            if g.kind != "approval":
                continue
            if g.approvers_allowed and len(set(g.approvers_allowed)) < need:
                return (f"approval: gate {g.id} allows only {', '.join(g.approvers_allowed)}, "
                        f"but a run without a verified requester needs {need} distinct "
                        "verified approvers per gate; start it through the approval service "
                        "(runbook login, then runbook start) or allow more approvers")
            g.min_approvals = max(g.min_approvals, need)
            g.two_person_rule = False
            g.quorum_note = (f"no verified requester: needs {g.min_approvals} distinct verified "
                             "approvers")
        return None

