"""Whose word a run takes: the identity policy resolved at run start, and the proofs kept.

``approval.identity`` in the request (or, when it is silent, the worker's deployment
default) says whether approvals, rejections, decisions, aborts and pauses must carry the
approval service's signed envelope (``verified``) or are taken by the name the caller
types (``claimed``, local rehearsal). The worker resolves it once, in the
``resolve_identity`` activity (activities/identity.py), so the answer is in history and a
replay never reads the worker's configuration or keys.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

# A run started before this patch takes claimed identities, as it did then.
IDENTITY_PATCH = "identity-1"
IdentityMode = Literal["verified", "claimed"]
CLAIMED_NOTE = "identity: claimed, not verified"
# Under verified, a run with no verified requester cannot apply the two-person rule: no
# one can tell who started it. Each of its gates needs this many distinct verified people.
UNVERIFIED_REQUESTER_QUORUM = 2


class IdentityQuery(BaseModel):
    """The ``resolve_identity`` activity's input."""

    policy: IdentityMode | None = None  # the request's approval.identity
    two_person_rule: bool = True  # the request's approval.two_person_rule
    requested_by: str = ""
    requester_proof: str | None = None
    workflow_id: str
    started_at: datetime


class IdentityResolution(BaseModel):
    """The ``resolve_identity`` activity's answer, and ``RunStatus.identity``."""

    mode: IdentityMode
    # Where the mode came from: "request" or "deployment default".
    source: str = "request"
    requester_verified: bool = False
    requester_idp: str | None = None
    # Why the requester is not verified (no proof, or the proof was refused), for the audit.
    requester_note: str = ""
    # The worker trusts envelopes signed with these key ids (names only, never keys).
    key_ids: list[str] = Field(default_factory=list)
    # Set when the deployment refuses the request's policy: the run ends, nothing changed.
    refused: str | None = None


class VerifiedMessage(BaseModel):
    """One message accepted with a verified identity: what the audit shows as its proof."""

    at: datetime
    act: str  # approve | reject | decide | abort | pause | resume
    gate: str | None = None
    by: str
    idp: str  # the OIDC issuer, or slack:<team>
    via: str  # cli | slack | api
    proof: str  # the envelope's id (jti)
    decision: str | None = None


def describe_identity(resolution: IdentityResolution | None, requested_by: str) -> str:
    """One line for status views and the audit: the mode and who the requester is."""
    if resolution is None or resolution.mode == "claimed":
        who = f"requester {requested_by}" if requested_by else "no requester"
        return f"{CLAIMED_NOTE} ({who}; approvers are the names callers typed)"
    if resolution.requester_verified:
        return f"verified (requester {requested_by}, proven by {resolution.requester_idp})"
    why = f": {resolution.requester_note}" if resolution.requester_note else ""
    return (f"verified; no verified requester{why}; each gate needs "
            f"{UNVERIFIED_REQUESTER_QUORUM} distinct verified approvers")
