"""docker-compose.yml and the Dockerfile agree with what the code really reads.

No Docker engine is needed: the file is parsed with PyYAML and compared with the source
(environment variable names grepped from worker.py, activities/settings.py,
activities/identity.py and approval/config.py, the task queue and search attributes from
runbook.messages, the simulator's real CLI flags, the approval service's real settings).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli.client import Settings
from devstack.stack import SEARCH_ATTRIBUTES
from runbook import messages as m

REPO = Path(__file__).resolve().parents[2]
SERVICES = {"postgresql", "temporal", "register-search-attributes", "temporal-ui", "gcpsim",
            "approval", "worker"}
# A user's `gcloud auth print-identity-token` has the Cloud SDK's OAuth client id as "aud"
# (gcloud refuses --audiences for user accounts): the default audience of Google tokens.
GCLOUD_CLIENT_ID = "32555940559.apps.googleusercontent.com"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def resolve(value: str) -> str:
    """Apply compose's ${VAR:-default} with an empty environment (the shipped defaults)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: resolve(v) for k, v in env.items()}


def env_constants(path: Path) -> set[str]:
    """The values of a module's ``ENV_X = "NAME"`` constants."""
    return set(re.findall(r'^ENV_[A-Z_]+\s*=\s*"([A-Z0-9_]+)"', path.read_text(), re.M))


def env_vars_read_by_code() -> set[str]:
    names = set(re.findall(r'os\.environ\.get\(\s*"([A-Z0-9_]+)"', (REPO / "worker.py").read_text()))
    names |= env_constants(REPO / "activities" / "settings.py")
    # Verified identities: the worker's policy and the envelope public keys it reads.
    identity = REPO / "activities" / "identity.py"
    names |= env_constants(identity)
    if "ENV_PUBLIC_KEYS_FILE" in identity.read_text():
        names |= {n for n in env_constants(REPO / "runbook" / "envelope.py")
                  if n.startswith("REMEDIATION_")}
    return names


def env_vars_read_by_approval_service() -> set[str]:
    config = REPO / "approval" / "config.py"
    names = env_constants(config)
    # The signing key's names are the envelope module's (imported by approval/config.py).
    assert "ENV_SIGNING_KEY_FILE" in config.read_text() and "ENV_SIGNING_KID" in config.read_text()
    return names | {n for n in env_constants(REPO / "runbook" / "envelope.py")
                    if n.startswith("RUNBOOK_APPROVAL_")}


def published(service: dict) -> dict[int, int]:
    out = {}
    for spec in service.get("ports", []):
        host, container = str(spec).split(":")[-2:]
        out[int(container)] = int(host)
    return out


def test_all_services_present(compose):
    assert set(compose["services"]) == SERVICES


def test_temporal_on_postgres(compose):
    s = compose["services"]
    assert s["postgresql"]["image"].startswith("postgres:")
    t = s["temporal"]
    assert t["image"].startswith("temporalio/auto-setup:")
    env = env_of(t)
    assert env["DB"] == "postgres12" and env["POSTGRES_SEEDS"] == "postgresql"
    assert env["POSTGRES_PWD"] == resolve(s["postgresql"]["environment"]["POSTGRES_PASSWORD"])
    assert t["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert published(t) == {7233: 7233}
    assert "healthcheck" in t and "healthcheck" in s["postgresql"]


def test_ui_is_where_the_cli_links_point(compose):
    ui = compose["services"]["temporal-ui"]
    assert ui["image"].startswith("temporalio/ui:")
    env = env_of(ui)
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["TEMPORAL_START_WORKFLOW_DISABLED"] == "false"  # start from the UI
    assert env["TEMPORAL_WORKFLOW_SIGNAL_DISABLED"] == "false"  # approve from the UI
    cli_ui_port = int(Settings().ui_url.rsplit(":", 1)[1])
    assert published(ui) == {8080: cli_ui_port}


# The UI server's env names (temporalio/ui server/docker/config-template.yaml at v2.34.0,
# server/config/docker.yaml since v2.38); a typo in one would be silently ignored.
UI_DISABLED = {"TEMPORAL_WORKFLOW_TERMINATE_DISABLED", "TEMPORAL_WORKFLOW_RESET_DISABLED",
               "TEMPORAL_BATCH_ACTIONS_DISABLED"}
UI_ENABLED = {"TEMPORAL_START_WORKFLOW_DISABLED", "TEMPORAL_WORKFLOW_SIGNAL_DISABLED",
              "TEMPORAL_WORKFLOW_CANCEL_DISABLED"}


def test_ui_cannot_bypass_the_rollback(compose):
    """Terminate and Reset run no workflow code (the run's changes would stay in force,
    unrecorded); signals, cancel (= abort with rollback) and start stay available."""
    ui = compose["services"]["temporal-ui"]
    env = env_of(ui)
    assert {k: env.get(k) for k in UI_DISABLED} == dict.fromkeys(UI_DISABLED, "true")
    assert {k: env.get(k) for k in UI_ENABLED} == dict.fromkeys(UI_ENABLED, "false")
    # Nothing else that would also turn off signals or cancel.
    assert env.get("TEMPORAL_DISABLE_WRITE_ACTIONS", "false") == "false"
    assert {k for k in env if k.endswith("_DISABLED")} <= UI_DISABLED | UI_ENABLED | {
        "TEMPORAL_WORKFLOW_UPDATE_DISABLED"}


def test_search_attributes_registered_match_the_contract(compose):
    svc = compose["services"]["register-search-attributes"]
    assert svc["image"].startswith("temporalio/admin-tools:")
    assert svc["depends_on"]["temporal"]["condition"] == "service_healthy"
    script = "\n".join(svc["command"])
    pairs = dict(re.findall(r"\b(Remediation[A-Za-z]+):(Keyword|Int|Text|Bool|Double|Datetime)\b", script))
    assert pairs == {m.SA_INCIDENT: "Keyword", m.SA_PHASE: "Int", m.SA_STATE: "Keyword"}
    assert pairs == SEARCH_ATTRIBUTES  # the same as devstack's dev server
    assert "temporal operator search-attribute create" in script


def test_worker_env_is_what_the_code_reads(compose):
    worker = compose["services"]["worker"]
    env = env_of(worker)
    read = env_vars_read_by_code()
    required = {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "REMEDIATION_TASK_QUEUE",
                "REMEDIATION_BACKEND", "REMEDIATION_GCP_ENDPOINT", "REMEDIATION_APP_URL"}
    assert required <= read, f"the code no longer reads {required - read}"
    assert required <= set(env)
    assert set(env) <= read, f"compose sets variables nothing reads: {set(env) - read}"
    assert env["REMEDIATION_TASK_QUEUE"] == m.DEFAULT_TASK_QUEUE
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["REMEDIATION_BACKEND"] == "sim"
    assert env["REMEDIATION_GCP_ENDPOINT"] == "http://gcpsim:8090"
    assert worker["command"] == ["python", "worker.py"]
    deps = worker["depends_on"]
    assert deps["temporal"]["condition"] == "service_healthy"
    assert deps["register-search-attributes"]["condition"] == "service_completed_successfully"
    assert deps["gcpsim"]["condition"] == "service_healthy"
    assert worker["healthcheck"]["test"] == ["CMD", "python", "-m", "devstack.probe", "worker"]


def test_worker_probe_ships_in_the_image():
    # The healthcheck runs `python -m devstack.probe`: devstack must be an installed package.
    pyproject = (REPO / "pyproject.toml").read_text()
    include = re.search(r"include\s*=\s*\[([^\]]*)\]", pyproject).group(1)
    assert '"devstack*"' in include and '"cli*"' in include
    assert (REPO / "devstack" / "probe.py").is_file()


def test_simulator_service_uses_real_flags(compose):
    sim = compose["services"]["gcpsim"]
    cmd = [resolve(c) for c in sim["command"]]
    assert cmd[:3] == ["python", "-m", "gcpsim"]
    opts = dict(zip(cmd[3::2], cmd[4::2]))
    assert opts["--host"] == "0.0.0.0" and opts["--port"] == "8090" and opts["--data-dir"] == "/data"
    float(opts["--speed"])
    help_text = subprocess.run([sys.executable, "-m", "gcpsim", "--help"], cwd=REPO,
                               capture_output=True, text=True, timeout=60).stdout
    for flag in opts:
        assert flag in help_text, f"gcpsim has no {flag}"
    assert "/_sim/healthz" in " ".join(sim["healthcheck"]["test"])
    assert published(sim) == {8090: 8090}
    assert sim["build"] == compose["services"]["worker"]["build"] == "."
    assert compose["services"]["approval"]["build"] == "."


def test_dockerfile_installs_the_project():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN pip install (/app|\.)\b", text, re.M)
    assert re.search(r'^CMD \["python", "worker.py"\]', text, re.M)
    ignored = (REPO / ".dockerignore").read_text().split()
    # secrets: the keys compose mounts (python -m devstack keys --dir secrets).
    for path in (".venv", "data", "node_modules", ".git", "secrets"):
        assert path in ignored


@pytest.mark.skipif(shutil.which("docker") is None
                    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
                    reason="docker compose plugin not installed (the YAML checks above still ran)")
def test_docker_compose_accepts_the_file():
    r = subprocess.run(["docker", "compose", "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_real_gcp_never_probes_the_simulator(compose):
    """Switching the backend to gcp must not leave phase 4 probing the simulator."""
    from activities.settings import Settings as WorkerSettings, SettingsError

    env = env_of(compose["services"]["worker"]) | {"REMEDIATION_BACKEND": "gcp"}
    with pytest.raises(SettingsError, match="REMEDIATION_APP_URL"):
        WorkerSettings.from_env(env).app_base_url(None)
    sim = WorkerSettings.from_env(env_of(compose["services"]["worker"]))
    assert sim.app_base_url(None) == "http://gcpsim:8090"


def test_worker_takes_verified_identities_only(compose, keypair):
    """The team deployment counts only approvals the approval service signed."""
    from activities.identity import ApprovalIdentityConfig

    worker = compose["services"]["worker"]
    env = env_of(worker)
    assert env["REMEDIATION_APPROVAL_IDENTITY"] == "verified"
    assert env["REMEDIATION_APPROVAL_ALLOW_CLAIMED"] == "false"
    keys_path = env["REMEDIATION_APPROVAL_PUBLIC_KEYS_FILE"]
    # Mounted from the compose config the keys command writes, at the path the env names.
    mounts = {c["target"]: c["source"] for c in worker["configs"]}
    assert keys_path in mounts
    assert resolve(compose["configs"][mounts[keys_path]]["file"]) == "./secrets/public-keys.json"
    assert keypair[1].name == "public-keys.json" and keypair[0].name == "signing-key.pem"
    # The worker really accepts that configuration (given a real public keys file).
    config = ApprovalIdentityConfig.from_env({**env, "REMEDIATION_APPROVAL_PUBLIC_KEYS_FILE":
                                              str(keypair[1])})
    assert config.default_mode == "verified" and config.allow_claimed is False
    assert config.verifier is not None


@pytest.fixture(scope="module")
def keypair(tmp_path_factory) -> tuple[Path, Path]:
    """(private key, public keys file) as `python -m devstack keys` writes them."""
    from devstack.__main__ import main

    folder = tmp_path_factory.mktemp("compose-keys")
    assert main(["keys", "--dir", str(folder)]) == 0
    return folder / "signing-key.pem", folder / "public-keys.json"


def test_approval_service_env_is_what_it_reads(compose, keypair):
    from approval.config import ServiceSettings

    svc = compose["services"]["approval"]
    assert svc["command"] == ["python", "-m", "approval"]
    assert svc["image"] == compose["services"]["worker"]["image"]
    env = env_of(svc)
    read = env_vars_read_by_approval_service()
    assert set(env) <= read, f"compose sets variables the service does not read: {set(env) - read}"
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["REMEDIATION_TASK_QUEUE"] == m.DEFAULT_TASK_QUEUE
    # Published on this machine only.
    assert svc["ports"] == ["127.0.0.1:8095:8095"] and published(svc) == {8095: 8095}
    assert "/healthz" in " ".join(svc["healthcheck"]["test"])
    assert svc["depends_on"]["temporal"]["condition"] == "service_healthy"
    # The signing key comes from a compose secret, at the path the env names.
    assert svc["secrets"] == ["approval-signing-key"]
    assert env["RUNBOOK_APPROVAL_SIGNING_KEY_FILE"] == "/run/secrets/approval-signing-key"
    assert resolve(compose["secrets"]["approval-signing-key"]["file"]) == "./secrets/signing-key.pem"
    # What the service makes of it: Google as the only issuer, no dev issuer, Slack off.
    settings = ServiceSettings.from_env(
        {**env, "RUNBOOK_APPROVAL_SIGNING_KEY_FILE": str(keypair[0])})
    assert [(i.issuer, i.audience, i.identity_claim) for i in settings.issuers] == [
        ("https://accounts.google.com", GCLOUD_CLIENT_ID, "email")]
    assert settings.dev_issuer is False
    assert settings.host == "0.0.0.0" and settings.port == 8095
    assert settings.slack_signing_secret_file is None and settings.slack_users_file is None
    # The kid the service signs with is the one `python -m devstack keys` writes by default.
    from devstack.__main__ import _parser

    assert settings.signing_kid == _parser().parse_args(["keys"]).kid
    settings.load_signer()


def test_audience_can_be_set_without_editing_the_issuer_list(compose):
    raw = compose["services"]["approval"]["environment"]["RUNBOOK_OIDC_ISSUERS"]
    assert "${RUNBOOK_OIDC_AUDIENCE:-" + GCLOUD_CLIENT_ID + "}" in raw
