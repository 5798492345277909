"""The CLI reaches Temporal as the worker does: its own --address/--namespace, plus TLS,
a Temporal Cloud API key and gRPC metadata from the SDK's standard variables
(runbook/temporal_connection.py). Bad settings stop it with the variable named; the API
key is never printed, nor logged."""

from __future__ import annotations

import logging

import pytest
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter

from cli import client as cli_client
from cli.client import START_HINT, TLS_HINT, CliError, Settings, connect
from gcpsim.launcher import free_port
from tests.cli.cli_process import cli_env, run_cli

API_KEY = "tmprl-secret-api-key-value-1234567890"
CLOUD = Settings(address="team.a1b2c.tmprl.cloud:7233", namespace="team.a1b2c")


@pytest.fixture
def no_profile(tmp_path) -> dict[str, str]:
    """No TOML profile: a developer's own ~/.config/temporalio must not leak in."""
    return {"TEMPORAL_CONFIG_FILE": str(tmp_path / "no-profile.toml")}


@pytest.fixture
def connected(monkeypatch) -> list[dict]:
    """The keyword arguments of each Client.connect the CLI makes (no server needed)."""
    calls: list[dict] = []

    async def fake_connect(*args, **kwargs):
        calls.append({"args": args, **kwargs})
        return "client"

    monkeypatch.setattr(cli_client.Client, "connect", fake_connect)
    return calls


async def test_a_local_server_gets_plaintext_and_the_cli_settings(connected, no_profile):
    settings = Settings(address="127.0.0.1:7233", namespace="ops")
    # The variables name another server: the CLI's own settings (flags over them) win.
    await connect(settings, no_profile | {"TEMPORAL_ADDRESS": "elsewhere:7233",
                                          "TEMPORAL_NAMESPACE": "other"})
    [call] = connected
    assert (call["args"], call["target_host"], call["namespace"]) == ((), "127.0.0.1:7233", "ops")
    assert "tls" not in call and "api_key" not in call
    assert call["data_converter"] is pydantic_data_converter
    assert any(isinstance(i, TracingInterceptor) for i in call["interceptors"])


async def test_a_temporal_cloud_api_key_turns_tls_on(connected, no_profile):
    await connect(CLOUD, no_profile | {"TEMPORAL_API_KEY": API_KEY,
                                       "TEMPORAL_GRPC_META_X_TEAM": "ops"})
    [call] = connected
    assert (call["target_host"], call["namespace"]) == (CLOUD.address, CLOUD.namespace)
    assert (call["api_key"], call["tls"]) == (API_KEY, True)
    assert call["rpc_metadata"] == {"x-team": "ops"}


async def test_mtls_certificates_are_read_from_the_named_files(connected, no_profile, tmp_path):
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\ny\n-----END PRIVATE KEY-----\n")
    await connect(CLOUD, no_profile | {"TEMPORAL_TLS_CLIENT_CERT_PATH": str(cert),
                                       "TEMPORAL_TLS_CLIENT_KEY_PATH": str(key)})
    [call] = connected
    assert call["tls"].client_cert == cert.read_bytes()
    assert call["tls"].client_private_key == key.read_bytes()


async def test_conflicting_settings_name_the_variables_and_not_the_key(connected, no_profile,
                                                                       tmp_path):
    (tmp_path / "c.pem").write_text("cert")
    with pytest.raises(CliError) as caught:
        await connect(CLOUD, no_profile | {"TEMPORAL_API_KEY": API_KEY,
                                           "TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "c.pem"),
                                           "TEMPORAL_TLS_CLIENT_CERT_DATA": "inline"})
    err = caught.value
    assert "TEMPORAL_TLS_CLIENT_CERT_PATH" in err.message
    assert "TEMPORAL_TLS_CLIENT_CERT_DATA" in err.message
    assert err.exit_code == 2 and API_KEY not in err.message + err.hint
    assert connected == []


async def test_an_unreachable_server_with_an_api_key_never_shows_the_key(no_profile, caplog):
    caplog.set_level(logging.DEBUG)
    settings = Settings(address=f"127.0.0.1:{free_port()}")
    with pytest.raises(CliError) as caught:
        await connect(settings, no_profile | {"TEMPORAL_API_KEY": API_KEY})
    err = caught.value
    assert err.message.startswith(f"cannot reach the Temporal server at {settings.address}")
    assert err.hint == TLS_HINT  # not "start ./dev up": the settings are the suspect
    assert API_KEY not in err.message + err.hint + caplog.text


async def test_a_server_error_echoing_the_key_is_redacted(monkeypatch, no_profile):
    async def echoing_connect(*args, **kwargs):
        raise RuntimeError(f"Failed client connect: bad credentials {kwargs['api_key']}")

    monkeypatch.setattr(cli_client.Client, "connect", echoing_connect)
    with pytest.raises(CliError) as caught:
        await connect(CLOUD, no_profile | {"TEMPORAL_API_KEY": API_KEY})
    assert API_KEY not in caught.value.message and "<api key>" in caught.value.message


async def test_a_plaintext_failure_still_points_at_the_local_stack(no_profile):
    with pytest.raises(CliError) as caught:
        await connect(Settings(address=f"127.0.0.1:{free_port()}"), no_profile)
    assert caught.value.hint == START_HINT


def test_the_cli_stops_with_the_setting_named_and_the_key_unprinted(tmp_path):
    env = cli_env(tmp_path, {"TEMPORAL_CONFIG_FILE": str(tmp_path / "no-profile.toml"),
                             "TEMPORAL_API_KEY": API_KEY, "LOG_LEVEL": "DEBUG",
                             "TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "c.pem"),
                             "TEMPORAL_TLS_CLIENT_CERT_DATA": "inline"})
    result = run_cli(["list"], env, timeout=60)
    assert result.code == 2, result.text
    assert "TEMPORAL_TLS_CLIENT_CERT_PATH" in result.err and API_KEY not in result.text



async def test_a_toml_profile_names_the_server_unless_a_variable_does(connected, tmp_path):
    """The same profile the `temporal` CLI and the worker read: its address, namespace and
    API key, with TEMPORAL_ADDRESS still winning when set."""
    config = tmp_path / "temporal.toml"
    config.write_text('[profile.cloud]\naddress = "team.a1b2c.tmprl.cloud:7233"\n'
                      f'namespace = "team.a1b2c"\napi_key = "{API_KEY}"\n')
    env = {"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "cloud"}
    settings = Settings.from_env(env)
    assert (settings.address, settings.namespace) == ("team.a1b2c.tmprl.cloud:7233", "team.a1b2c")
    await connect(settings, env)
    (call,) = connected
    assert call["target_host"] == "team.a1b2c.tmprl.cloud:7233" and call["api_key"] == API_KEY
    assert call["namespace"] == "team.a1b2c" and call["tls"] is True
    assert Settings.from_env(env | {"TEMPORAL_ADDRESS": "other:7233"}).address == "other:7233"
