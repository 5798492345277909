"""The signed approval envelope: proof of who sent a message to a run, checked by the worker.

The approval service (approval/) authenticates a person with an OIDC bearer token, then
sends the run's update carrying an envelope: a compact JWS (RFC 7515, signed with Ed25519,
"EdDSA") whose claims say who (``sub``, proven by the OIDC issuer ``idp``), what (``act``,
``gate``, ``digest``, ``decision``), on which run (``wid``, ``rid``) and when (``iat``,
``exp``). The service holds the private key; the worker holds only public keys, by key id,
so a key can be rotated by adding the new one before signing with it.

The envelope is a signature, not a secret: it may sit in workflow history (it is what the
audit shows as the proof). The keys never do. Verification runs only in update validators
(workflows/identity_checks.py), which do not run on replay; a handler reads the claims
with ``read_claims`` and no key, so replay never depends on the keys.

Files:
- worker: ``REMEDIATION_APPROVAL_PUBLIC_KEYS_FILE``: ``{"keys": {"<kid>": "<PEM public key>"}}``
- service: ``RUNBOOK_APPROVAL_SIGNING_KEY_FILE`` (PEM private key) and
  ``RUNBOOK_APPROVAL_SIGNING_KID``.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENVELOPE_ISSUER = "runbook-approval-service"
ENVELOPE_AUDIENCE = "remediation-worker"
ALGORITHM = "EdDSA"
# How long an envelope is good for: long enough for the service to send it, short enough
# that a captured one is useless soon after (each is also bound to one run and gate).
ENVELOPE_TTL_S = 120
# Clocks of the service and the server differ a little; more than this is refused.
CLOCK_SKEW_S = 30
MAX_ENVELOPE = 4096

ENV_PUBLIC_KEYS_FILE = "REMEDIATION_APPROVAL_PUBLIC_KEYS_FILE"
ENV_SIGNING_KEY_FILE = "RUNBOOK_APPROVAL_SIGNING_KEY_FILE"
ENV_SIGNING_KID = "RUNBOOK_APPROVAL_SIGNING_KID"

Action = Literal["approve", "reject", "decide", "abort", "pause", "resume", "start"]
# How the sender reached the approval service (shown in the audit).
Via = Literal["cli", "slack", "api"]


class EnvelopeError(ValueError):
    """Why an envelope is refused; the text is shown to the sender and kept for the audit."""


class EnvelopeClaims(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sub: str = Field(min_length=1, max_length=200)  # canonical identity (runbook/identity.py)
    idp: str = Field(max_length=300)  # who proved it: the OIDC issuer, or slack:<team>
    act: Action
    wid: str = Field(max_length=300)  # workflow id
    rid: str | None = Field(default=None, max_length=100)  # run id (None for act=start)
    gate: str | None = Field(default=None, max_length=64)
    digest: str | None = Field(default=None, max_length=128)
    decision: str | None = Field(default=None, max_length=16)
    via: Via = "api"
    iat: int
    exp: int
    jti: str = Field(max_length=64)


def new_claims(*, sub: str, idp: str, act: Action, wid: str, rid: str | None = None,
               gate: str | None = None, digest: str | None = None, decision: str | None = None,
               via: str = "api", now: datetime | None = None,
               ttl_s: int = ENVELOPE_TTL_S) -> EnvelopeClaims:
    iat = int((now or datetime.now(timezone.utc)).timestamp())
    return EnvelopeClaims(sub=sub, idp=idp, act=act, wid=wid, rid=rid, gate=gate, digest=digest,
                          decision=decision, via=via, iat=iat, exp=iat + ttl_s,
                          jti=secrets.token_hex(16))


class EnvelopeSigner:
    """The approval service's side: signs claims with its private key."""

    def __init__(self, private_key: Ed25519PrivateKey, kid: str) -> None:
        self._key, self.kid = private_key, kid

    @classmethod
    def from_pem(cls, pem: bytes, kid: str) -> "EnvelopeSigner":
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise EnvelopeError("signing key: must be an Ed25519 private key (PEM)")
        return cls(key, kid)

    def sign(self, claims: EnvelopeClaims) -> str:
        body = claims.model_dump(exclude_none=True) | {"iss": ENVELOPE_ISSUER,
                                                        "aud": ENVELOPE_AUDIENCE}
        return jwt.encode(body, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})


class EnvelopeVerifier:
    """The worker's side: public keys by key id; verifies signature and time window.

    Binding to the run, gate, digest and sender is the caller's (it knows the run):
    workflows/identity_checks.py and activities/identity.py."""

    def __init__(self, public_keys: dict[str, Ed25519PublicKey]) -> None:
        self._keys = dict(public_keys)

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    @classmethod
    def from_file(cls, path: str | Path) -> "EnvelopeVerifier":
        where = f"{ENV_PUBLIC_KEYS_FILE} ({path})"
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise EnvelopeError(f"{where}: cannot read: {err}") from None
        if not isinstance(data, dict) or set(data) != {"keys"} or not isinstance(data["keys"], dict) \
                or not data["keys"]:
            raise EnvelopeError(f'{where}: must be {{"keys": {{"<kid>": "<PEM public key>"}}}} '
                                "with at least one key")
        keys = {}
        for kid, pem in data["keys"].items():
            try:
                key = serialization.load_pem_public_key(str(pem).encode())
            except ValueError as err:
                raise EnvelopeError(f"{where}: keys.{kid}: not a PEM public key: {err}") from None
            if not isinstance(key, Ed25519PublicKey):
                raise EnvelopeError(f"{where}: keys.{kid}: must be an Ed25519 public key")
            keys[str(kid)] = key
        return cls(keys)

    def verify(self, token: str, now: datetime) -> EnvelopeClaims:
        """The claims of a genuine, current envelope; EnvelopeError saying why not."""
        if not isinstance(token, str) or not token or len(token) > MAX_ENVELOPE:
            raise EnvelopeError("envelope: missing, not a string or too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            raise EnvelopeError(f"envelope: not a signed envelope ({err})") from None
        if header.get("alg") != ALGORITHM:
            raise EnvelopeError(f"envelope: algorithm {header.get('alg')!r} is not accepted "
                                f"(only {ALGORITHM})")
        key = self._keys.get(str(header.get("kid")))
        if key is None:
            raise EnvelopeError(f"envelope: signed with unknown key {header.get('kid')!r}; "
                                f"this worker trusts {', '.join(self.key_ids) or 'no keys'}")
        try:
            # Time is checked below against the caller's clock (the workflow's, in a
            # validator): PyJWT would read the machine's.
            body = jwt.decode(token, key, algorithms=[ALGORITHM], audience=ENVELOPE_AUDIENCE,
                              issuer=ENVELOPE_ISSUER,
                              options={"verify_exp": False, "verify_iat": False,
                                       "verify_nbf": False,
                                       "require": ["exp", "iat", "sub", "iss", "aud"]})
        except jwt.InvalidSignatureError:
            raise EnvelopeError("envelope: the signature does not verify (forged or altered)") \
                from None
        except jwt.PyJWTError as err:
            raise EnvelopeError(f"envelope: refused ({err})") from None
        claims = _claims(body)
        t = int(now.timestamp())
        if claims.exp <= claims.iat or claims.exp - claims.iat > ENVELOPE_TTL_S:
            raise EnvelopeError(f"envelope: lifetime must be 1..{ENVELOPE_TTL_S} s")
        if t >= claims.exp + CLOCK_SKEW_S:
            raise EnvelopeError(f"envelope: expired {t - claims.exp} s ago; send it again")
        if claims.iat > t + CLOCK_SKEW_S:
            raise EnvelopeError(f"envelope: issued {claims.iat - t} s in the future")
        return claims


def read_claims(token: str) -> EnvelopeClaims:
    """The claims of an envelope already verified (by a validator): no key, no clock, so a
    handler reads the same values on replay whatever keys the worker has now."""
    try:
        body = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as err:
        raise EnvelopeError(f"envelope: not a signed envelope ({err})") from None
    return _claims(body)


def _claims(body: dict) -> EnvelopeClaims:
    try:
        return EnvelopeClaims.model_validate(body)
    except ValidationError as err:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in err.errors()[:5])
        raise EnvelopeError(f"envelope: bad claims ({fields})") from None


def generate_keypair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM): for ./dev up and tests; production keys come from a
    secret store (README: Approvals)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def write_keypair(private_path: Path, public_keys_path: Path, kid: str) -> None:
    """A new key pair as the service and worker read them (private key mode 0600)."""
    private, public = generate_keypair()
    # Created readable by the owner only: never a moment with the default mode.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    private_path.chmod(0o600)  # an existing file keeps its mode through O_CREAT
    public_keys_path.write_text(json.dumps({"keys": {kid: public.decode()}}, indent=2))
