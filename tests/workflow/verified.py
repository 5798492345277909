"""Verified identities for time-skipping tests: a real key pair, a worker that trusts it,
and envelopes signed for the run as the approval service signs them (runbook/envelope.py).

Envelopes are dated by the test server's clock: under time skipping, workflow time runs
ahead of the machine's, and the validator checks freshness against workflow time."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.identity import ApprovalIdentityConfig
from runbook.envelope import EnvelopeSigner, EnvelopeVerifier, generate_keypair, new_claims
from tests.workflow.doubles import FakeCloud
from worker import build_worker

KID = "test-key-1"


class Keys:
    """A signing key the worker trusts, and another one it does not (for forgeries)."""

    def __init__(self) -> None:
        private, public = generate_keypair()
        self.signer = EnvelopeSigner.from_pem(private, KID)
        self.verifier = EnvelopeVerifier({KID: serialization.load_pem_public_key(public)})
        # Same key id, another key: what a forger without the service's key can make.
        other, _ = generate_keypair()
        self.forger = EnvelopeSigner.from_pem(other, KID)

    def config(self, default_mode: str = "verified", allow_claimed: bool = True,
               trusted: bool = True) -> ApprovalIdentityConfig:
        return ApprovalIdentityConfig(default_mode=default_mode, allow_claimed=allow_claimed,
                                      verifier=self.verifier if trusted else None)


@asynccontextmanager
async def verified_worker(env: WorkflowEnvironment, cloud: FakeCloud, task_queue: str,
                          config: ApprovalIdentityConfig):
    async with build_worker(env.client, task_queue, cloud.activities(), identity=config):
        yield


async def envelope(env: WorkflowEnvironment, handle: WorkflowHandle, signer: EnvelopeSigner,
                   *, sub: str, act: str = "approve", gate: str | None = None,
                   digest: str | None = None, decision: str | None = None,
                   age: timedelta = timedelta(0), wid: str | None = None,
                   rid: str | None = None, via: str = "cli") -> str:
    now: datetime = await env.get_current_time() - age
    if rid is None:
        rid = (await handle.describe()).run_id
    return signer.sign(new_claims(sub=sub, idp="https://issuer.test", act=act,  # type: ignore[arg-type]
                                  wid=wid or handle.id, rid=rid, gate=gate, digest=digest,
                                  decision=decision, via=via, now=now))


def start_proof(signer: EnvelopeSigner, now: datetime, wid: str, sub: str) -> str:
    return signer.sign(new_claims(sub=sub, idp="https://issuer.test", act="start", wid=wid,
                                  via="cli", now=now))


def approval(gate: str, approver: str, digest: str | None, token: str | None,
             **extra: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"gate": gate, "approver": approver, **extra}
    if digest is not None:
        msg["plan_digest"] = digest
    if token is not None:
        msg["envelope"] = token
    return msg
