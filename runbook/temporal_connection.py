"""How a process reaches Temporal: the SDK's standard client environment configuration.

``TEMPORAL_ADDRESS`` and ``TEMPORAL_NAMESPACE`` as before, plus what a real cluster needs
and the SDK already defines (temporalio.envconfig): ``TEMPORAL_TLS``,
``TEMPORAL_TLS_CLIENT_CERT_PATH`` / ``TEMPORAL_TLS_CLIENT_KEY_PATH`` (mTLS, e.g. Temporal
Cloud with certificates or a self-hosted cluster behind TLS),
``TEMPORAL_TLS_SERVER_CA_CERT_PATH``, ``TEMPORAL_TLS_SERVER_NAME``, ``TEMPORAL_API_KEY``
(Temporal Cloud API keys; TLS turns on with it), ``TEMPORAL_GRPC_META_*`` and a TOML
profile (``TEMPORAL_CONFIG_FILE``, ``TEMPORAL_PROFILE``). Using the SDK's loader keeps the
names and semantics the ``temporal`` CLI uses, so one set of settings serves both.

The API key and key material stay in the process: they go to the connection, never into
a workflow's input or history.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from temporalio.envconfig import ClientConfigProfile

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"


class TemporalConnectionError(ValueError):
    """The Temporal connection settings are unusable; the message names the variable."""


# The SDK reads these as booleans; it would take any other word as "on".
BOOLEAN_VARIABLES = ("TEMPORAL_TLS", "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION")
BOOLEAN_WORDS = ("true", "false", "1", "0")
# Files a setting names must exist (the SDK's error would name the path, not the variable).
PATH_VARIABLES = ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH",
                  "TEMPORAL_TLS_SERVER_CA_CERT_PATH")


def connect_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``Client.connect`` (``target_host`` included). Never log
    them: they hold the API key and the TLS private key."""
    # Empty means unset, as compose writes optional settings (`TEMPORAL_API_KEY: ${X:-}`):
    # an empty namespace or key must not override the default or turn TLS on.
    source = {k: v for k, v in (os.environ if env is None else env).items()
              if not (k.startswith("TEMPORAL_") and v.strip() == "")}
    for name in BOOLEAN_VARIABLES:
        if name in source and source[name].strip().lower() not in BOOLEAN_WORDS:
            raise TemporalConnectionError(f"{name}={source[name]!r}: expected true or false")
    for name in PATH_VARIABLES:
        if name in source and not os.path.isfile(source[name]):
            raise TemporalConnectionError(f"{name}={source[name]!r}: no such file")
    try:
        profile = ClientConfigProfile.load(override_env_vars=source)
        options: dict[str, Any] = dict(profile.to_client_connect_config())
    except Exception as err:  # the SDK raises plain errors for bad files / conflicting vars
        raise TemporalConnectionError(
            f"Temporal connection settings (TEMPORAL_* variables or TEMPORAL_CONFIG_FILE): {err}") from err
    options.setdefault("target_host", DEFAULT_ADDRESS)
    options.setdefault("namespace", DEFAULT_NAMESPACE)
    return options


def describe(options: Mapping[str, Any]) -> str:
    """For a log line: where and how, never the key."""
    how = "api-key" if options.get("api_key") else ("tls" if options.get("tls") else "plaintext")
    return f"{options['target_host']} namespace={options['namespace']} ({how})"
