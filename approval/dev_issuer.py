"""A local OIDC issuer for the dev stack and tests ONLY: anyone can get a token for any name.

It serves what a real issuer serves (discovery, JWKS) so the service checks its tokens on
the same path as Google's, and POST /token hands out an RS256 ID token for any ``user``
with no password. Its key lives in memory and is new at every start. It is on only when
RUNBOOK_DEV_ISSUER=1, and says so loudly: in production it would let anyone approve.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from approval.oidc import IssuerConfig
from runbook.identity import normalize_identity

log = logging.getLogger(__name__)

DEV_AUDIENCE = "runbook"
DEV_ISSUER_PATH = "/dev-issuer"
ALGORITHM = "RS256"
DEFAULT_TTL_S = 3600
MAX_TTL_S = 24 * 3600


class TokenAsk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=200)
    ttl_s: int = Field(default=DEFAULT_TTL_S, ge=1, le=MAX_TTL_S)


class DevIssuer:
    """The issuer ``issuer_url`` (usually ``<service public URL>/dev-issuer``): its key,
    its tokens and its routes. Also a key source for approval.oidc.TokenVerifier, so the
    service checks dev tokens without calling itself over HTTP."""

    def __init__(self, issuer_url: str) -> None:
        self.issuer = issuer_url.rstrip("/")
        self.kid = f"dev-{secrets.token_hex(4)}"
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        self._jwk = jwk | {"kid": self.kid, "alg": ALGORITHM, "use": "sig"}
        log.warning("!!! DEV OIDC ISSUER ON at %s: it gives a token for ANY user without a "
                    "password. For the dev stack and tests only; NEVER use it in production "
                    "(unset RUNBOOK_DEV_ISSUER). !!!", self.issuer)

    def issuer_config(self) -> IssuerConfig:
        return IssuerConfig(issuer=self.issuer, audience=DEV_AUDIENCE, identity_claim="email")

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._jwk]}

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks",
                "token_endpoint": f"{self.issuer}/token",
                "id_token_signing_alg_values_supported": [ALGORITHM],
                "subject_types_supported": ["public"],
                "response_types_supported": ["id_token"]}

    def issue(self, user: str, ttl_s: int = DEFAULT_TTL_S, *, now: float | None = None,
              extra_claims: dict[str, Any] | None = None) -> str:
        """An ID token for ``user``. ``now`` and ``extra_claims`` let tests make expired or
        odd tokens signed with the real key; the HTTP endpoint offers neither."""
        identity = normalize_identity(user, "user")
        iat = int(time.time() if now is None else now)
        claims = {"iss": self.issuer, "aud": DEV_AUDIENCE, "sub": identity, "email": identity,
                  "email_verified": True, "iat": iat, "exp": iat + ttl_s,
                  **(extra_claims or {})}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK:
        """The KeySource interface (as jwt.PyJWKClient)."""
        kid = jwt.get_unverified_header(token).get("kid")
        if kid != self.kid:
            raise jwt.PyJWKClientError(f"unable to find a signing key that matches {kid!r}")
        return jwt.PyJWK.from_dict(self._jwk)

    def router(self) -> APIRouter:
        """Routes under the issuer URL's path: discovery, /jwks, POST /token."""
        router = APIRouter(prefix=urlsplit(self.issuer).path.rstrip("/"), tags=["dev issuer"])

        @router.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return self.discovery()

        @router.get("/jwks")
        def jwks() -> dict[str, Any]:
            return self.jwks()

        @router.post("/token")
        def token(ask: TokenAsk) -> dict[str, Any]:
            try:
                id_token = self.issue(ask.user, ask.ttl_s)
            except ValueError as err:
                raise HTTPException(422, str(err)) from None
            log.warning("dev issuer: issued a token for %s (dev only)",
                        normalize_identity(ask.user, "user"))
            return {"id_token": id_token, "token_type": "Bearer", "expires_in": ask.ttl_s}

        return router


def dev_issuer_url(service_url: str) -> str:
    """Where the service mounts its dev issuer: the tokens' "iss"."""
    return service_url.rstrip("/") + DEV_ISSUER_PATH


def dev_issuer_router(base_url: str) -> APIRouter:
    """The routes of a new dev issuer whose "iss" is ``base_url`` (served under its path).
    Use DevIssuer directly to also verify its tokens in-process (approval/__main__.py)."""
    return DevIssuer(base_url).router()
