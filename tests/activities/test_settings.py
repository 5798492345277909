"""Settings from the environment; errors name the variable."""

from __future__ import annotations

import pytest

from activities import build_activities
from activities.settings import Settings, SettingsError
from runbook import activity_names


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.backend == "sim"
    assert s.gcp_endpoint == "http://127.0.0.1:8090"
    assert s.probe_token == "probe-token"
    assert s.poll_interval_s == 2.0
    # The simulator serves the application endpoints at its root.
    assert s.app_base_url(None) == "http://127.0.0.1:8090"
    assert s.app_base_url("https://api.example.com/") == "https://api.example.com"


def test_reads_every_variable() -> None:
    s = Settings.from_env({
        "REMEDIATION_BACKEND": "gcp", "REMEDIATION_GCP_ENDPOINT": "http://127.0.0.1:9",
        "REMEDIATION_APP_URL": "https://staging.example.com", "REMEDIATION_PROBE_TOKEN": "t0k",
        "REMEDIATION_POLL_INTERVAL_S": "0.25",
    })
    assert (s.backend, s.app_url, s.probe_token, s.poll_interval_s) == (
        "gcp", "https://staging.example.com", "t0k", 0.25)


@pytest.mark.parametrize("var,value", [
    ("REMEDIATION_BACKEND", "aws"),
    ("REMEDIATION_POLL_INTERVAL_S", "fast"),
    ("REMEDIATION_POLL_INTERVAL_S", "0"),
    ("REMEDIATION_GCP_ENDPOINT", "127.0.0.1:8090"),
    ("REMEDIATION_APP_URL", "staging.example.com"),
])
def test_bad_value_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({var: value})
    assert var in str(err.value)


def test_gcp_probe_needs_an_app_url() -> None:
    s = Settings.from_env({"REMEDIATION_BACKEND": "gcp"})
    with pytest.raises(SettingsError, match="REMEDIATION_APP_URL"):
        s.app_base_url(None)
    assert s.app_base_url("https://x.example") == "https://x.example"


def test_build_activities_registers_every_name() -> None:
    from temporalio import activity

    from activities.identity import ApprovalIdentityConfig, IdentityActivities
    from worker import lease_keeper_activities, temporal_activities

    # The cloud's activities, plus those worker.py adds: the ones that talk to Temporal
    # itself, and the run-start identity check (activities/identity.py).
    main, lease = temporal_activities(None), lease_keeper_activities(None)
    identity = IdentityActivities(ApprovalIdentityConfig()).resolve_identity
    names = sorted(activity._Definition.from_callable(f).name
                   for f in [*build_activities(Settings.from_env({})), *main, *lease, identity])
    expected = sorted(v for k, v in vars(activity_names).items()
                      if k.isupper() and isinstance(v, str))
    assert names == expected


def test_read_only_names_are_exactly_the_runbooks_reads() -> None:
    """The background liveness heartbeat (activities/liveness.py) must never reach a
    mutating activity (it would overwrite its checkpoint), and every read, probe and soak
    step of the runbook must get it (else a dead worker costs its whole timeout)."""
    from runbook.default_runbook import build_runbook
    from runbook.request import RemediationRequest

    book = build_runbook(RemediationRequest())
    steps = [s for p in book.phases for s in p.steps] + [book.cleanup.step]
    changing = {s.activity for s in steps if s.kind == "mutate"}
    changing |= {s.compensation for s in steps if s.compensation}
    reading = {s.activity for s in steps if s.kind != "mutate"}
    assert reading <= activity_names.READ_ONLY
    assert not changing & activity_names.READ_ONLY
    assert all(s.heartbeat_s for s in steps if s.kind != "mutate")
