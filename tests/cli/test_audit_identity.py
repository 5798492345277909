"""The audit calls a sender verified only where the run's validator checked the envelope."""

from __future__ import annotations

import jwt

from cli.audit_identity import message_proof, trusted_proof
from runbook.identity_policy import CLAIMED_NOTE, IdentityResolution

VERIFIED = IdentityResolution(mode="verified", requester_verified=True)
CLAIMED = IdentityResolution(mode="claimed")


def forged() -> str:
    """An unsigned token (alg none) with plausible claims: what anyone can put in a signal."""
    return jwt.encode({"sub": "alice", "idp": "https://accounts.google.com", "act": "approve",
                       "wid": "w", "via": "cli", "iat": 1, "exp": 2, "jti": "f" * 32},
                      key=None, algorithm="none")


def test_only_an_accepted_update_of_a_verified_run_is_verified():
    claimed = message_proof({"gate": "phase-1", "approver": "alice", "envelope": forged()})
    assert claimed.startswith("alice by https://accounts.google.com via cli")
    assert trusted_proof(claimed, "update", "accepted", VERIFIED).startswith("verified: alice")
    for via, result, identity, why in (("signal", "received", VERIFIED, "a signal"),
                                       ("update", "accepted", CLAIMED, "a claimed run"),
                                       ("update", "accepted", None, "a claimed run"),
                                       ("update", "failed: gone", VERIFIED, "not accepted")):
        proof = trusted_proof(claimed, via, result, identity)
        assert proof.startswith(f"not verified ({why}"), proof


def test_no_envelope_is_claimed():
    assert message_proof({"gate": "phase-1", "approver": "alice"}) == CLAIMED_NOTE
    assert trusted_proof(CLAIMED_NOTE, "update", "accepted", VERIFIED) == CLAIMED_NOTE
    assert message_proof({"envelope": "not-a-jwt"}).startswith("unreadable envelope")
