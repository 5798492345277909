"""The approval service's settings, from the environment; every error names the variable.

Secrets are referenced by file path only (the signing key, Slack's signing secret): the
values are read by the code that needs them and never logged.

Temporal is reached as the worker reaches it (runbook/temporal_connection.py):
TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE, and for Temporal Cloud or a TLS cluster the SDK's
TEMPORAL_API_KEY / TEMPORAL_TLS_* / TEMPORAL_CONFIG_FILE. The API key is kept out of the
settings' repr, so logging the settings never shows it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from approval.oidc import IssuerConfig
from runbook.envelope import ENV_SIGNING_KEY_FILE, ENV_SIGNING_KID, EnvelopeError, EnvelopeSigner
from runbook.messages import DEFAULT_TASK_QUEUE, describe_validation_error
from runbook.temporal_connection import TemporalConnectionError, connect_options

ENV_ISSUERS = "RUNBOOK_OIDC_ISSUERS"
ENV_DEV_ISSUER = "RUNBOOK_DEV_ISSUER"
ENV_HOST = "RUNBOOK_APPROVAL_HOST"
ENV_PORT = "RUNBOOK_APPROVAL_PORT"
ENV_PUBLIC_URL = "RUNBOOK_APPROVAL_PUBLIC_URL"
ENV_SLACK_SECRET_FILE = "RUNBOOK_SLACK_SIGNING_SECRET_FILE"
ENV_SLACK_USERS_FILE = "RUNBOOK_SLACK_USERS_FILE"
ENV_TEMPORAL_ADDRESS = "TEMPORAL_ADDRESS"
ENV_TEMPORAL_NAMESPACE = "TEMPORAL_NAMESPACE"
ENV_TASK_QUEUE = "REMEDIATION_TASK_QUEUE"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8095
# Plain http is accepted only for issuers on this machine (tests, a local mock issuer):
# keys fetched over http from elsewhere could be swapped on the way.
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


class ConfigError(ValueError):
    """A setting is missing or wrong: the text names the variable and the reason."""


@dataclass(frozen=True)
class ServiceSettings:
    signing_key_file: Path
    signing_kid: str
    issuers: list[IssuerConfig] = field(default_factory=list)
    dev_issuer: bool = False
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    public_url: str = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    slack_signing_secret_file: Path | None = None
    slack_users_file: Path | None = None
    # Client.connect's TLS / API key / gRPC metadata options (connect_options()); the
    # address and namespace are the fields above.
    temporal_connection: Mapping[str, Any] = field(default_factory=dict, repr=False,
                                                   compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ServiceSettings":
        env = os.environ if env is None else env
        dev_issuer = _flag(env, ENV_DEV_ISSUER)
        issuers = _issuers(env.get(ENV_ISSUERS, ""))
        if not issuers and not dev_issuer:
            raise ConfigError(f"{ENV_ISSUERS}: no OIDC issuer configured, so nobody could log in; "
                              'set it to [{"issuer": "https://accounts.google.com", '
                              '"audience": "<client id>"}] (or RUNBOOK_DEV_ISSUER=1 for the dev stack)')
        key_file = env.get(ENV_SIGNING_KEY_FILE, "")
        if not key_file:
            raise ConfigError(f"{ENV_SIGNING_KEY_FILE}: not set; it must name the PEM file of the "
                              "service's Ed25519 signing key")
        kid = env.get(ENV_SIGNING_KID, "")
        if not kid or len(kid) > 64 or not kid.isprintable():
            raise ConfigError(f"{ENV_SIGNING_KID}: must be set to the key id the worker knows the "
                              "public key by (1-64 printable characters)")
        host = env.get(ENV_HOST) or DEFAULT_HOST
        port = _port(env.get(ENV_PORT, ""))
        public_url = (env.get(ENV_PUBLIC_URL) or f"http://{host}:{port}").rstrip("/")
        if urlsplit(public_url).scheme not in ("http", "https") or not urlsplit(public_url).netloc:
            raise ConfigError(f"{ENV_PUBLIC_URL}: must be an http(s) URL, got {public_url!r}")
        try:
            connection = connect_options(env)
        except TemporalConnectionError as err:
            raise ConfigError(str(err)) from None
        return cls(
            signing_key_file=Path(key_file), signing_kid=kid, issuers=issuers,
            dev_issuer=dev_issuer,
            # Empty counts as unset; a TEMPORAL_CONFIG_FILE profile may name them too.
            temporal_address=(env.get(ENV_TEMPORAL_ADDRESS) or connection.get("target_host")
                              or "localhost:7233"),
            temporal_namespace=(env.get(ENV_TEMPORAL_NAMESPACE) or connection.get("namespace")
                                or "default"),
            task_queue=env.get(ENV_TASK_QUEUE) or DEFAULT_TASK_QUEUE,
            host=host, port=port, public_url=public_url,
            slack_signing_secret_file=_path(env.get(ENV_SLACK_SECRET_FILE, "")),
            slack_users_file=_path(env.get(ENV_SLACK_USERS_FILE, "")),
            temporal_connection={k: v for k, v in connection.items()
                                 if k not in ("target_host", "namespace")},
        )

    def temporal_connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Client.connect``: where, plus how (TLS, API key)."""
        return {**self.temporal_connection, "target_host": self.temporal_address,
                "namespace": self.temporal_namespace}

    def load_signer(self) -> EnvelopeSigner:
        where = f"{ENV_SIGNING_KEY_FILE} ({self.signing_key_file})"
        try:
            pem = self.signing_key_file.read_bytes()
        except OSError as err:
            raise ConfigError(f"{where}: cannot read: {err.strerror or err}") from None
        try:
            return EnvelopeSigner.from_pem(pem, self.signing_kid)
        except (EnvelopeError, ValueError, TypeError) as err:
            # The error text of a bad PEM never contains the key itself.
            raise ConfigError(f"{where}: not an Ed25519 private key in PEM ({err})") from None


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}: must be 1 or 0 (true/false), got {value[:20]!r}")


def _port(raw: str) -> int:
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"{ENV_PORT}: must be a port number 1-65535, got {raw[:20]!r}")
    return int(raw)


def _path(raw: str) -> Path | None:
    return Path(raw) if raw else None


def _issuers(raw: str) -> list[IssuerConfig]:
    if not raw.strip():
        return []
    try:
        items = json.loads(raw)
    except ValueError as err:
        raise ConfigError(f"{ENV_ISSUERS}: not JSON ({err})") from None
    if not isinstance(items, list):
        raise ConfigError(f'{ENV_ISSUERS}: must be a JSON list like [{{"issuer": "https://...", '
                          f'"audience": "..."}}], got {type(items).__name__}')
    issuers = []
    for i, item in enumerate(items):
        where = f"{ENV_ISSUERS}[{i}]"
        try:
            config = IssuerConfig.model_validate(item)
        except ValidationError as err:
            raise ConfigError(f"{where}: {describe_validation_error(err)}") from None
        for name in ("issuer", "jwks_uri"):
            url = getattr(config, name)
            if url is not None and not _safe_url(url):
                raise ConfigError(f"{where}.{name}: must be an https URL (http only for localhost), "
                                  f"got {url!r}")
        issuers.append(config)
    names = [c.issuer for c in issuers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{ENV_ISSUERS}: issuer {duplicates[0]} is listed twice")
    return issuers


def _safe_url(url: str) -> bool:
    parts = urlsplit(url)
    if not parts.netloc:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS)
