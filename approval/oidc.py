"""Who is calling: an OIDC ID token (a JWT) checked against the issuers the service trusts.

A token is accepted only when one configured issuer signed it (asymmetric algorithms
only: never "none" or a shared-secret HS*), for this service's audience, and it is
current (exp/iat, 30 s leeway). The person is the issuer's ``identity_claim`` (default
``email``, which must be verified when the token says whether it is), in the canonical
spelling of runbook/identity.py. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol

import httpx
import jwt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from approval.actions import Person
from runbook.identity import normalize_identity

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
LEEWAY_S = 30
MAX_TOKEN = 16 * 1024
DISCOVERY_PATH = "/.well-known/openid-configuration"
HTTP_TIMEOUT_S = 10.0
# How long fetched signing keys are trusted before they are read again; an unknown key id
# also triggers a fresh read (the issuer rotated its keys).
JWKS_LIFESPAN_S = 300
# Issuers that sign an ID token for anyone with an account (any Gmail user, say): trusting
# one without a domain or identity allowlist would let anybody approve.
OPEN_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})


class IssuerConfig(BaseModel):
    """One trusted OIDC issuer (an item of RUNBOOK_OIDC_ISSUERS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(min_length=1, max_length=300)  # exactly the tokens' "iss"
    audience: str = Field(min_length=1, max_length=300)  # the tokens' "aud" for this service
    jwks_uri: str | None = Field(default=None, max_length=1000)  # default: from discovery
    identity_claim: str = Field(default="email", min_length=1, max_length=64)
    # Who may log in: e-mail domains (Google Workspace's ``hd`` claim, else the e-mail's
    # domain) and/or exact identities. Empty lists: anyone the issuer vouches for, which
    # is refused for issuers that vouch for anyone with an account (OPEN_ISSUERS).
    allowed_domains: list[str] = Field(default_factory=list, max_length=50)
    allowed_identities: list[str] = Field(default_factory=list, max_length=500)

    @model_validator(mode="after")
    def _restricted(self) -> "IssuerConfig":
        if self.issuer in OPEN_ISSUERS and not (self.allowed_domains or self.allowed_identities):
            raise ValueError(f"{self.issuer} signs tokens for anyone with an account: set "
                             "allowed_domains (your Workspace domain) or allowed_identities")
        return self

    def admits(self, identity: str, claims: dict[str, Any]) -> bool:
        if not (self.allowed_domains or self.allowed_identities):
            return True
        if identity in {normalize_identity(i, "allowed_identities") for i in self.allowed_identities}:
            return True
        domain = str(claims.get("hd") or (identity.rsplit("@", 1)[1] if "@" in identity else ""))
        return bool(domain) and domain.casefold() in {d.casefold() for d in self.allowed_domains}


class TokenRefused(Exception):
    """The bearer token does not prove who the caller is; ``reason`` says what failed.
    ``status_code`` 401, or 503 when the issuer's keys cannot be read right now."""

    def __init__(self, reason: str, status_code: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class KeySource(Protocol):
    """Finds the public key that signed a token (jwt.PyJWKClient is one)."""

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK: ...


class TokenVerifier:
    """Checks bearer tokens against ``issuers``.

    ``key_sources`` gives an issuer's keys directly (the built-in dev issuer, whose keys
    are in this process); other issuers' keys are read over HTTPS from their JWKS, found
    by OIDC discovery unless the config names ``jwks_uri``. ``http`` is the client used
    for discovery (injectable for tests)."""

    def __init__(self, issuers: list[IssuerConfig], *,
                 key_sources: dict[str, KeySource] | None = None,
                 http: httpx.Client | None = None) -> None:
        self._issuers = {c.issuer: c for c in issuers}
        if len(self._issuers) != len(issuers):
            raise ValueError("issuers: the same issuer is configured twice")
        self._key_sources: dict[str, KeySource] = dict(key_sources or {})
        self._http = http
        self._lock = threading.Lock()  # verify runs in worker threads (verify_async)

    @property
    def issuers(self) -> list[str]:
        return sorted(self._issuers)

    async def verify_async(self, bearer: str) -> Person:
        # Reading an issuer's keys is blocking HTTP (PyJWKClient): keep it off the loop.
        return await asyncio.to_thread(self.verify, bearer)

    def verify(self, bearer: str) -> Person:
        """The person the token proves; TokenRefused naming what failed."""
        if not isinstance(bearer, str) or not bearer:
            raise TokenRefused("missing token")
        if len(bearer) > MAX_TOKEN:
            raise TokenRefused(f"token longer than {MAX_TOKEN} bytes")
        try:
            header = jwt.get_unverified_header(bearer)
            # Only to choose which issuer's rules apply; nothing is trusted until decode below.
            unverified = jwt.decode(bearer, options={"verify_signature": False})
        except jwt.PyJWTError as err:
            raise TokenRefused(f"malformed token: not a JWT ({err})") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise TokenRefused(f"algorithm {alg!r} is not accepted "
                               f"(only {', '.join(sorted(ALLOWED_ALGORITHMS))})")
        iss = unverified.get("iss")
        if not isinstance(iss, str) or not iss:
            raise TokenRefused("missing claim: iss")
        config = self._issuers.get(iss)
        if config is None:
            raise TokenRefused(f"unknown issuer {iss[:200]!r}; this service trusts "
                               f"{', '.join(self.issuers) or 'no issuer'}")
        key = self._signing_key(config, bearer)
        if key.algorithm_name not in ALLOWED_ALGORITHMS:
            raise TokenRefused(f"the issuer's key uses algorithm {key.algorithm_name!r}, "
                               "which is not accepted")
        claims = self._decode(config, bearer, key)
        return Person(identity=self._identity(config, claims), idp=config.issuer)

    def _decode(self, config: IssuerConfig, bearer: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            return jwt.decode(bearer, key, algorithms=[key.algorithm_name],
                              audience=config.audience, issuer=config.issuer, leeway=LEEWAY_S,
                              options={"require": ["exp", "iat", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise TokenRefused("token expired: log in again") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(f"wrong audience: this service accepts tokens for "
                               f"{config.audience!r} from {config.issuer}") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused("wrong issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("bad signature: the token was not signed by "
                               f"{config.issuer} or was altered") from None
        except jwt.MissingRequiredClaimError as err:
            raise TokenRefused(f"missing claim: {err.claim}") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("token not valid yet (issued in the future): check clocks") from None
        except jwt.InvalidAlgorithmError:
            raise TokenRefused("algorithm does not match the issuer's key") from None
        except jwt.PyJWTError as err:
            raise TokenRefused(f"invalid token ({err})") from None

    @staticmethod
    def _identity(config: IssuerConfig, claims: dict[str, Any]) -> str:
        name = config.identity_claim
        value = claims.get(name)
        if value is None or value == "":
            raise TokenRefused(f"missing claim: {name}")
        if name == "email" and claims.get("email_verified") not in (True, "true"):
            # Absent counts as unverified: an issuer that does not say cannot vouch for it.
            raise TokenRefused(f"email not verified by {config.issuer}")
        try:
            identity = normalize_identity(value, f"claim {name}")
        except ValueError as err:
            raise TokenRefused(str(err)) from None
        if not config.admits(identity, claims):
            raise TokenRefused(f"{identity} may not log in here (not in allowed_domains or "
                               f"allowed_identities of {config.issuer})", 403)
        return identity

    # ---------------------------------------------------------------- keys --------------

    def _signing_key(self, config: IssuerConfig, bearer: str) -> jwt.PyJWK:
        source = self._key_source(config)
        try:
            return source.get_signing_key_from_jwt(bearer)
        except jwt.PyJWKClientConnectionError as err:
            raise TokenRefused(f"cannot read the signing keys of {config.issuer} ({err})",
                               503) from None
        except (jwt.PyJWKClientError, jwt.PyJWKError, jwt.DecodeError) as err:
            raise TokenRefused(f"bad signature: no matching key at {config.issuer} ({err})") \
                from None

    def _key_source(self, config: IssuerConfig) -> KeySource:
        with self._lock:
            source = self._key_sources.get(config.issuer)
            if source is None:
                uri = config.jwks_uri or self._discover_jwks_uri(config.issuer)
                source = jwt.PyJWKClient(uri, cache_keys=True, lifespan=JWKS_LIFESPAN_S,
                                         timeout=HTTP_TIMEOUT_S)
                self._key_sources[config.issuer] = source
            return source

    def _discover_jwks_uri(self, issuer: str) -> str:
        url = issuer.rstrip("/") + DISCOVERY_PATH
        http = self._http or httpx.Client(timeout=HTTP_TIMEOUT_S)
        try:
            resp = http.get(url)
            resp.raise_for_status()
            doc = resp.json()
        except (httpx.HTTPError, ValueError) as err:
            raise TokenRefused(f"cannot read the OIDC discovery document {url} ({err})",
                               503) from None
        finally:
            if self._http is None:
                http.close()
        # OIDC Discovery 1.0 §4.3: the document must name exactly the issuer asked about.
        if not isinstance(doc, dict) or doc.get("issuer") != issuer \
                or not isinstance(doc.get("jwks_uri"), str):
            raise TokenRefused(f"the discovery document {url} does not name issuer {issuer} "
                               "with a jwks_uri", 503)
        log.info("OIDC issuer %s: signing keys at %s", issuer, doc["jwks_uri"])
        return doc["jwks_uri"]
