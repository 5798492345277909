"""The worker's side of verified identities: its configuration and the run-start answer.

Configuration (environment, read once at worker start):
- ``REMEDIATION_APPROVAL_IDENTITY``: ``verified`` or ``claimed``, the policy of a run whose
  request does not say (unset: ``claimed``, local rehearsal).
- ``REMEDIATION_APPROVAL_ALLOW_CLAIMED``: ``false`` refuses a request asking for
  ``claimed`` (a team deployment: nobody can opt out of verification).
- ``REMEDIATION_APPROVAL_PUBLIC_KEYS_FILE``: the approval service's public keys
  (runbook/envelope.py). Without it no envelope verifies, so a verified run is refused at
  start rather than left waiting for approvals that can never count.

The same verifier checks each message's envelope in the update validators
(workflows/identity_checks.py, through ``EnvelopeCheckInterceptor``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from temporalio import activity

from runbook import activity_names
from runbook.envelope import ENV_PUBLIC_KEYS_FILE, EnvelopeError, EnvelopeVerifier
from runbook.identity import normalize_identity
from runbook.identity_policy import IdentityMode, IdentityQuery, IdentityResolution

ENV_IDENTITY = "REMEDIATION_APPROVAL_IDENTITY"
ENV_ALLOW_CLAIMED = "REMEDIATION_APPROVAL_ALLOW_CLAIMED"
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


class IdentityConfigError(ValueError):
    """Bad identity configuration; names the variable and the reason."""


@dataclass(frozen=True)
class ApprovalIdentityConfig:
    default_mode: IdentityMode = "claimed"
    allow_claimed: bool = True
    verifier: EnvelopeVerifier | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "ApprovalIdentityConfig":
        env = dict(os.environ if env is None else env)
        mode = env.get(ENV_IDENTITY, "claimed").strip() or "claimed"
        if mode not in ("verified", "claimed"):
            raise IdentityConfigError(f"{ENV_IDENTITY}: must be verified or claimed, got {mode!r}")
        allow = env.get(ENV_ALLOW_CLAIMED, "true").strip().lower()
        if allow not in _TRUE + _FALSE:
            raise IdentityConfigError(f"{ENV_ALLOW_CLAIMED}: must be true or false, got {allow!r}")
        if mode == "claimed" and allow in _FALSE:
            raise IdentityConfigError(f"{ENV_ALLOW_CLAIMED}=false needs {ENV_IDENTITY}=verified")
        path = env.get(ENV_PUBLIC_KEYS_FILE, "").strip()
        try:
            verifier = EnvelopeVerifier.from_file(path) if path else None
        except EnvelopeError as err:
            raise IdentityConfigError(str(err)) from None
        return cls(default_mode=mode, allow_claimed=allow in _TRUE, verifier=verifier)  # type: ignore[arg-type]


class IdentityActivities:
    def __init__(self, config: ApprovalIdentityConfig) -> None:
        self._config = config

    @activity.defn(name=activity_names.RESOLVE_IDENTITY)
    async def resolve_identity(self, query: IdentityQuery) -> IdentityResolution:
        """Which identities the run takes, and whether its requester is proven."""
        return resolve(self._config, query)


def resolve(config: ApprovalIdentityConfig, query: IdentityQuery) -> IdentityResolution:
    mode = query.policy or config.default_mode
    source = "request" if query.policy else "deployment default"
    keys = config.verifier.key_ids if config.verifier else []
    out = IdentityResolution(mode=mode, source=source, key_ids=keys)
    if mode == "claimed":
        if not config.allow_claimed:
            out.refused = ("approval.identity: this deployment takes verified identities only "
                           f"({ENV_ALLOW_CLAIMED}=false); leave it out or set \"verified\"")
        return out
    if config.verifier is None:
        out.refused = ("approval.identity: verified, but this worker has no approval public keys "
                       f"({ENV_PUBLIC_KEYS_FILE}), so no approval could ever be verified")
        return out
    if not query.two_person_rule:
        # Verified identities exist to prove who approved; without the two-person rule
        # the proven requester could approve their own run alone.
        out.refused = ("approval.two_person_rule: false is not allowed with verified "
                       "identities: the requester could approve their own run")
        return out
    out.requester_verified, out.requester_idp, out.requester_note = _requester(config.verifier, query)
    return out


def _requester(verifier: EnvelopeVerifier, q: IdentityQuery) -> tuple[bool, str | None, str]:
    if not q.requester_proof:
        return False, None, ("no proof of who started it (started outside the approval "
                             "service, e.g. from the Web UI)")
    try:
        # The proof must have been fresh when the run started, not now: a worker picking
        # the run up late must reach the same answer.
        claims = verifier.verify(q.requester_proof, q.started_at)
    except EnvelopeError as err:
        return False, None, f"requester proof refused: {err}"
    try:
        claimed = normalize_identity(q.requested_by, "requested_by") if q.requested_by else ""
    except ValueError as err:
        return False, None, f"requester proof refused: {err}"
    if claims.act != "start":
        return False, None, f"requester proof refused: it is for {claims.act!r}, not a start"
    if claims.wid != q.workflow_id:
        return False, None, "requester proof refused: it was signed for another run"
    if claims.sub != claimed:
        return False, None, (f"requester proof refused: it proves {claims.sub!r}, but the "
                             f"request says {claimed or 'nobody'!r}")
    return True, claims.idp, ""
