"""OIDC token verification against the dev issuer served over real HTTP (uvicorn): the
verifier finds the keys by discovery and reads them with PyJWKClient, as for Google."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI

from approval.actions import Person
from approval.dev_issuer import DevIssuer
from approval.oidc import IssuerConfig, TokenRefused, TokenVerifier


@pytest.fixture(scope="module")
def issuer():
    """A dev issuer on a real port, served by uvicorn in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    dev = DevIssuer(f"http://127.0.0.1:{port}/dev-issuer")
    app = FastAPI()
    app.include_router(dev.router())
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield dev
    server.should_exit = True
    thread.join()
    sock.close()


@pytest.fixture
def verifier(issuer):
    # No key source given: keys come over HTTP from the issuer's discovery document.
    return TokenVerifier([IssuerConfig(issuer=issuer.issuer, audience="runbook")])


def http_token(dev: DevIssuer, user: str) -> str:
    resp = httpx.post(f"{dev.issuer}/token", json={"user": user})
    resp.raise_for_status()
    return resp.json()["id_token"]


def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenRefused) as caught:
        verifier.verify(token)
    assert caught.value.status_code == 401
    return caught.value.reason


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_valid_token_proves_the_normalized_email(issuer, verifier):
    person = verifier.verify(http_token(issuer, "Alice@Example.com"))
    assert person == Person(identity="alice@example.com", idp=issuer.issuer)


async def test_verify_async_gives_the_same_person(issuer, verifier):
    person = await verifier.verify_async(http_token(issuer, "bob@example.com"))
    assert person.identity == "bob@example.com"


def test_an_expired_token_is_refused(issuer, verifier):
    token = issuer.issue("alice@example.com", ttl_s=600, now=time.time() - 3600)
    assert "expired" in refusal(verifier, token)


def test_a_token_for_another_audience_is_refused(issuer):
    verifier = TokenVerifier([IssuerConfig(issuer=issuer.issuer, audience="another-service")])
    assert "wrong audience" in refusal(verifier, http_token(issuer, "alice@example.com"))


def test_a_token_of_an_unknown_issuer_is_refused(issuer, verifier):
    stranger = DevIssuer("https://evil.example/dev-issuer")
    reason = refusal(verifier, stranger.issue("alice@example.com"))
    assert "unknown issuer" in reason and "evil.example" in reason


def test_a_token_signed_by_another_key_for_the_same_issuer_is_refused(issuer, verifier):
    # An attacker's key, claiming the trusted issuer's name: its kid is not in the JWKS.
    forger = DevIssuer(issuer.issuer)
    assert "bad signature" in refusal(verifier, forger.issue("alice@example.com"))


def test_a_tampered_token_is_refused(issuer, verifier):
    header, payload, signature = http_token(issuer, "mallory@example.com").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = ".".join([header, b64(claims | {"email": "alice@example.com"}), signature])
    assert "bad signature" in refusal(verifier, forged)


def test_alg_none_is_refused(issuer, verifier):
    claims = jwt.decode(http_token(issuer, "alice@example.com"), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert "algorithm 'none' is not accepted" in refusal(verifier, unsigned)


def test_a_shared_secret_token_is_refused(issuer, verifier):
    # HS256 "signed" with the issuer's public key: the classic algorithm-confusion forgery.
    claims = jwt.decode(http_token(issuer, "alice@example.com"), options={"verify_signature": False})
    # PyJWT will not sign this (it refuses public keys as HMAC secrets), so sign by hand.
    public = jwt.PyJWK.from_dict(issuer.jwks()["keys"][0]).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': issuer.kid})}.{b64(claims)}"
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert "algorithm 'HS256' is not accepted" in refusal(verifier, forged)


def test_an_unverified_email_is_refused(issuer, verifier):
    token = issuer.issue("alice@example.com", extra_claims={"email_verified": False})
    assert "email not verified" in refusal(verifier, token)


def test_a_token_without_the_identity_claim_is_refused(issuer, verifier):
    token = issuer.issue("alice@example.com", extra_claims={"email": None})
    assert refusal(verifier, token) == "missing claim: email"


def test_another_identity_claim_can_be_configured(issuer):
    verifier = TokenVerifier([IssuerConfig(issuer=issuer.issuer, audience="runbook",
                                           identity_claim="preferred_username")])
    token = issuer.issue("x@example.com", extra_claims={"preferred_username": "Carol"})
    assert verifier.verify(token).identity == "carol"
    # email_verified only guards the email claim.
    token = issuer.issue("x@example.com", extra_claims={"preferred_username": "carol",
                                                          "email_verified": False})
    assert verifier.verify(token).identity == "carol"


def test_an_unreadable_identity_is_refused(issuer, verifier):
    token = issuer.issue("alice@example.com", extra_claims={"email": "alice\u202e@example.com"})
    assert "invisible" in refusal(verifier, token)


@pytest.mark.parametrize("junk", ["", "not-a-jwt", "a.b.c", "x" * 20000])
def test_junk_is_refused(verifier, junk):
    assert refusal(verifier, junk)


def test_an_issuer_without_discovery_is_unavailable_not_unauthenticated(issuer):
    missing = issuer.issuer.replace("/dev-issuer", "/nowhere")
    verifier = TokenVerifier([IssuerConfig(issuer=missing, audience="runbook")])
    stranger = DevIssuer(missing)
    with pytest.raises(TokenRefused) as caught:
        verifier.verify(stranger.issue("alice@example.com"))
    assert caught.value.status_code == 503 and "discovery" in caught.value.reason


def test_an_injected_key_source_needs_no_http():
    dev = DevIssuer("http://unreachable.invalid/dev-issuer")
    verifier = TokenVerifier([dev.issuer_config()], key_sources={dev.issuer: dev})
    assert verifier.verify(dev.issue("dana")).identity == "dana"
    assert "expired" in refusal(verifier, dev.issue("dana", ttl_s=60, now=time.time() - 600))


def test_an_explicit_jwks_uri_skips_discovery(issuer):
    verifier = TokenVerifier([IssuerConfig(issuer=issuer.issuer, audience="runbook",
                                           jwks_uri=f"{issuer.issuer}/jwks")],
                             http=httpx.Client(transport=httpx.MockTransport(
                                 lambda request: pytest.fail(f"discovery called: {request.url}"))))
    assert verifier.verify(http_token(issuer, "erin")).identity == "erin"


def test_an_email_the_issuer_does_not_say_is_verified_is_refused(issuer, verifier):
    token = issuer.issue("alice@example.com", extra_claims={"email_verified": None})
    with pytest.raises(TokenRefused, match="email not verified"):
        verifier.verify(token)


def test_only_allowed_domains_and_identities_may_log_in(issuer):
    verifier = TokenVerifier([IssuerConfig(issuer=issuer.issuer, audience="runbook",
                                           allowed_domains=["Corp.example"],
                                           allowed_identities=["Contractor@Other.example"])])
    assert verifier.verify(issuer.issue("alice@corp.example")).identity == "alice@corp.example"
    assert verifier.verify(issuer.issue("contractor@other.example")).identity \
        == "contractor@other.example"
    with pytest.raises(TokenRefused, match="may not log in here") as info:
        verifier.verify(issuer.issue("mallory@gmail.com"))
    assert info.value.status_code == 403
    # A Workspace token's hd claim names the organisation, whatever the address says.
    assert verifier.verify(issuer.issue("bob@alias.example", extra_claims={"hd": "corp.example"})
                           ).identity == "bob@alias.example"


def test_google_is_refused_without_an_allowlist():
    with pytest.raises(ValueError, match="signs tokens for anyone with an account"):
        IssuerConfig(issuer="https://accounts.google.com", audience="a")
    IssuerConfig(issuer="https://accounts.google.com", audience="a", allowed_domains=["corp.example"])
