"""Who the audit can say sent each message, and the run's identity policy, from history.

An envelope in an accepted update (runbook/envelope.py) was verified by the worker's
validator before it reached history: a refused one never does. The audit reads its claims
(no key needed) to name who proved the sender and how it was sent; a message without one
is shown as claimed. The run's policy is the ``resolve_identity`` activity's result.
"""

from __future__ import annotations

from typing import Any, Iterable

from runbook import activity_names as act
from runbook.envelope import EnvelopeError, read_claims
from runbook.identity_policy import CLAIMED_NOTE, IdentityResolution


def message_proof(payload: Any) -> str:
    """What the message's envelope claims, unchecked: ``trusted_proof`` decides whether
    the audit may call it verified."""
    token = payload.get("envelope") if isinstance(payload, dict) else None
    if not token:
        return CLAIMED_NOTE
    try:
        claims = read_claims(token)
    except (EnvelopeError, ValueError) as err:
        return f"unreadable envelope ({err})"
    return f"{claims.sub} by {claims.idp} via {claims.via} (envelope {claims.jti[:12]})"


def trusted_proof(claimed: str, via: str, result: str,
                  identity: IdentityResolution | None) -> str:
    """The proof column: "verified" only for an update the run accepted while it took
    verified identities, since only then did its validator check the envelope. A signal,
    or any message to a claimed run, reached history unchecked whatever it carried."""
    if claimed == CLAIMED_NOTE or claimed.startswith("unreadable"):
        return claimed
    if identity is not None and identity.mode == "verified" and via == "update" \
            and result.startswith("accepted"):
        return f"verified: {claimed}"
    why = "a signal" if via != "update" else (
        "not accepted" if not result.startswith("accepted") else "a claimed run")
    return f"not verified ({why}; the envelope was not checked): {claimed}"


def run_identity(activities: Iterable[Any]) -> IdentityResolution | None:
    """The run's resolved identity policy; None for a run before identity-1 (claimed)."""
    for record in activities:
        if record.activity_type == act.RESOLVE_IDENTITY and isinstance(record.result, dict):
            try:
                return IdentityResolution.model_validate(record.result)
            except ValueError:
                return None
    return None
