"""The worker reaches Temporal through the SDK's standard environment configuration:
a local dev server, a TLS cluster and Temporal Cloud with the same variable names the
`temporal` CLI reads."""

from __future__ import annotations

import pytest

from runbook.temporal_connection import TemporalConnectionError, connect_options, describe


def test_defaults_reach_a_local_server_in_plaintext(tmp_path):
    # An empty config file location: a developer's own ~/.config profile must not leak in.
    options = connect_options({"TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml")})
    assert options == {"target_host": "localhost:7233", "namespace": "default"}
    assert describe(options) == "localhost:7233 namespace=default (plaintext)"


def test_temporal_cloud_api_key_turns_tls_on_and_is_never_described(tmp_path):
    options = connect_options({"TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml"),
                               "TEMPORAL_ADDRESS": "team.a1b2c.tmprl.cloud:7233",
                               "TEMPORAL_NAMESPACE": "team.a1b2c",
                               "TEMPORAL_API_KEY": "secret-key-value"})
    assert options["api_key"] == "secret-key-value" and options["tls"] is True
    assert options["target_host"] == "team.a1b2c.tmprl.cloud:7233"
    text = describe(options)
    assert "secret-key-value" not in text and text.endswith("(api-key)")


def test_mtls_client_certificate_files_are_read(tmp_path):
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\ny\n-----END PRIVATE KEY-----\n")
    options = connect_options({"TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml"),
                               "TEMPORAL_ADDRESS": "temporal.internal:7233",
                               "TEMPORAL_TLS_CLIENT_CERT_PATH": str(cert),
                               "TEMPORAL_TLS_CLIENT_KEY_PATH": str(key)})
    tls = options["tls"]
    assert tls.client_cert == cert.read_bytes() and tls.client_private_key == key.read_bytes()
    assert describe(options).endswith("(tls)")


def test_conflicting_settings_name_the_variables(tmp_path):
    (tmp_path / "c.pem").write_text("cert")
    with pytest.raises(TemporalConnectionError) as err:
        connect_options({"TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml"),
                         "TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "c.pem"),
                         "TEMPORAL_TLS_CLIENT_CERT_DATA": "inline"})
    assert "TEMPORAL_TLS_CLIENT_CERT_PATH" in str(err.value)
    assert "TEMPORAL_TLS_CLIENT_CERT_DATA" in str(err.value)


def test_empty_settings_count_as_unset(tmp_path):
    # compose writes optional settings as `${TEMPORAL_API_KEY:-}`: empty, not absent.
    options = connect_options({"TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml"),
                               "TEMPORAL_NAMESPACE": "", "TEMPORAL_API_KEY": "",
                               "TEMPORAL_ADDRESS": " "})
    assert options == {"target_host": "localhost:7233", "namespace": "default"}


@pytest.mark.parametrize("env, says", [
    ({"TEMPORAL_TLS": "maybe"}, "TEMPORAL_TLS='maybe': expected true or false"),
    ({"TEMPORAL_TLS_CLIENT_CERT_PATH": "/nonexistent/client.pem"},
     "TEMPORAL_TLS_CLIENT_CERT_PATH='/nonexistent/client.pem': no such file"),
])
def test_a_bad_value_names_its_variable(tmp_path, env, says):
    with pytest.raises(TemporalConnectionError, match=says):
        connect_options({"TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml"), **env})
