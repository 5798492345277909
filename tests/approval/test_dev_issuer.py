"""The dev issuer serves a real OIDC issuer's documents and tokens (for the dev stack)."""

from __future__ import annotations

import logging

import httpx
import jwt
import pytest
from fastapi import FastAPI

from approval.dev_issuer import DEV_AUDIENCE, DevIssuer, dev_issuer_router, dev_issuer_url

SERVICE = "http://approval.test:8095"


@pytest.fixture
def dev_app():
    dev = DevIssuer(dev_issuer_url(SERVICE))
    app = FastAPI()
    app.include_router(dev.router())
    return dev, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SERVICE)


async def test_discovery_names_the_issuer_and_its_jwks(dev_app):
    dev, http = dev_app
    doc = (await http.get("/dev-issuer/.well-known/openid-configuration")).json()
    assert doc["issuer"] == f"{SERVICE}/dev-issuer" == dev.issuer
    assert doc["jwks_uri"] == f"{SERVICE}/dev-issuer/jwks"
    keys = (await http.get("/dev-issuer/jwks")).json()["keys"]
    assert [(k["kid"], k["alg"], k["kty"]) for k in keys] == [(dev.kid, "RS256", "RSA")]
    assert "d" not in keys[0] and "p" not in keys[0]  # public part only


async def test_token_verifies_with_the_served_jwks(dev_app):
    dev, http = dev_app
    resp = await http.post("/dev-issuer/token", json={"user": " Alice@Example.COM ", "ttl_s": 600})
    assert resp.status_code == 200
    body = resp.json()
    assert body["expires_in"] == 600 and body["token_type"] == "Bearer"
    jwks = jwt.PyJWKSet.from_dict((await http.get("/dev-issuer/jwks")).json())
    key = jwks[jwt.get_unverified_header(body["id_token"])["kid"]]
    claims = jwt.decode(body["id_token"], key, algorithms=["RS256"], audience=DEV_AUDIENCE,
                        issuer=dev.issuer)
    assert claims["email"] == claims["sub"] == "alice@example.com"
    assert claims["email_verified"] is True
    assert claims["exp"] - claims["iat"] == 600


async def test_default_lifetime_is_one_hour(dev_app):
    _, http = dev_app
    token = (await http.post("/dev-issuer/token", json={"user": "bob"})).json()["id_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize("body, field", [
    ({"user": ""}, "user"),
    ({"user": "bob\u200b"}, "user"),
    ({"user": "bob", "ttl_s": 0}, "ttl_s"),
    ({"user": "bob", "ttl_s": 10**9}, "ttl_s"),
    ({"user": "bob", "admin": True}, "admin"),
])
async def test_bad_token_requests_are_refused_naming_the_field(dev_app, body, field):
    _, http = dev_app
    resp = await http.post("/dev-issuer/token", json=body)
    assert resp.status_code == 422
    assert field in resp.text


async def test_router_factory_serves_under_the_issuer_path():
    app = FastAPI()
    app.include_router(dev_issuer_router("http://localhost:9999/somewhere/dev"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://localhost:9999") as http:
        doc = (await http.get("/somewhere/dev/.well-known/openid-configuration")).json()
    assert doc["issuer"] == "http://localhost:9999/somewhere/dev"


def test_each_start_has_a_new_key_and_says_it_is_dev_only(caplog):
    with caplog.at_level(logging.WARNING, logger="approval.dev_issuer"):
        first, second = DevIssuer(SERVICE + "/dev-issuer"), DevIssuer(SERVICE + "/dev-issuer")
    assert first.jwks()["keys"][0]["n"] != second.jwks()["keys"][0]["n"]
    assert "NEVER use it in production" in caplog.text


def test_key_source_refuses_a_token_of_another_key():
    first, second = DevIssuer(SERVICE + "/dev-issuer"), DevIssuer(SERVICE + "/dev-issuer")
    assert first.get_signing_key_from_jwt(first.issue("alice")).key_id == first.kid
    with pytest.raises(jwt.PyJWKClientError):
        first.get_signing_key_from_jwt(second.issue("alice"))
