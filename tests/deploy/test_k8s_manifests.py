"""deploy/k8s: valid Kubernetes objects (kubernetes-validate, strict: unknown fields are
errors) that agree with the code: the env names the worker reads, its health routes and
ports, its graceful shutdown, the image's user. No cluster is needed."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy import (
    REPO,
    bind_port,
    env_vars_read_by_worker,
    health_routes,
    library_env,
    worker_graceful_shutdown,
)

K8S = REPO / "deploy" / "k8s"
# The oldest minor the manifests are checked against (they use nothing newer, so clusters
# a few releases behind take them) and the newest kubernetes-validate ships.
K8S_VERSIONS = ["1.33", kubernetes_validate.utils.latest_version()]
# Shapes of what the operator creates (secrets), not applied by kustomization.yaml.
EXAMPLES = {"secret.example.yaml"}


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def objects() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in documents(p)]


def one(kind: str, name: str | None = None) -> dict:
    (found,) = [d for f, d in objects() if d["kind"] == kind and f not in EXAMPLES
                and (name is None or d["metadata"]["name"] == name)]
    return found


@pytest.fixture(scope="module")
def deployment() -> dict:
    return one("Deployment", "remediation-worker")


@pytest.fixture(scope="module")
def container(deployment) -> dict:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


@pytest.fixture(scope="module")
def config(container) -> dict[str, str]:
    """The worker's environment from its ConfigMap (envFrom)."""
    (source,) = container["envFrom"]
    return one("ConfigMap", source["configMapRef"]["name"])["data"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_are_valid_kubernetes_objects(version):
    found = objects()
    assert {d["kind"] for _, d in found} >= {"Deployment", "ConfigMap", "Service",
                                             "PodDisruptionBudget", "Secret", "ServiceAccount"}
    for name, doc in found:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{name} {doc['kind']}: {err.message}")
    # Strict really refuses what Kubernetes would drop silently.
    broken = one("Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_kustomization_applies_every_manifest_but_the_examples():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"} - EXAMPLES
    assert set(kustomization["resources"]) == files
    (image,) = kustomization["images"]
    assert image["newTag"] != "latest"


def test_env_is_what_the_worker_reads(container, config):
    read = env_vars_read_by_worker() | library_env()
    names = set(config) | {e["name"] for e in container["env"]}
    assert names <= read, f"the manifests set variables nothing reads: {names - read}"
    assert {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "REMEDIATION_TASK_QUEUE", "REMEDIATION_BACKEND",
            "REMEDIATION_METRICS_BIND", "REMEDIATION_HEALTH_BIND", "REMEDIATION_LOG_FORMAT",
            "REMEDIATION_APPROVAL_PUBLIC_KEYS_FILE"} <= set(config)
    # Real Google Cloud, verified approvals, JSON logs.
    assert config["REMEDIATION_BACKEND"] == "gcp" and "REMEDIATION_GCP_ENDPOINT" not in config
    assert config["REMEDIATION_APPROVAL_IDENTITY"] == "verified"
    assert config["REMEDIATION_APPROVAL_ALLOW_CLAIMED"] == "false"
    assert config["REMEDIATION_LOG_FORMAT"] == "json"
    assert container["command"] == ["python", "worker.py"]


def test_settings_are_accepted_by_the_code(container, config):
    """What the worker makes of this configuration (secrets stand in as placeholders)."""
    from activities.settings import Settings
    from observability.logs import ENV_LOG_FORMAT
    from runbook.temporal_connection import connect_options

    settings = Settings.from_env(config)
    assert settings.backend == "gcp"
    connection = connect_options({**config, "TEMPORAL_API_KEY": "placeholder"})
    assert connection["target_host"] == config["TEMPORAL_ADDRESS"]
    assert connection["namespace"] == config["TEMPORAL_NAMESPACE"]
    assert connection["api_key"] == "placeholder" and connection["tls"]
    assert config[ENV_LOG_FORMAT] in ("json", "text")


def test_probes_and_ports_match_the_health_and_metrics_binds(container, config):
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == bind_port(config["REMEDIATION_HEALTH_BIND"], "REMEDIATION_HEALTH_BIND")
    assert ports["metrics"] == bind_port(config["REMEDIATION_METRICS_BIND"], "REMEDIATION_METRICS_BIND")
    assert config["REMEDIATION_HEALTH_BIND"].startswith("0.0.0.0:")
    assert config["REMEDIATION_METRICS_BIND"].startswith("0.0.0.0:")
    live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    startup = container["startupProbe"]
    assert (live["path"], ready["path"], startup["httpGet"]["path"]) == ("/healthz", "/readyz", "/healthz")
    assert {live["path"], ready["path"]} <= health_routes()
    assert live["port"] == ready["port"] == startup["httpGet"]["port"] == "health"
    # A worker still connecting (the health server starts after it polls) gets a minute
    # or more before liveness may kill it.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_metrics_service_reaches_every_worker(deployment):
    service = one("Service", "remediation-worker-metrics")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics"


def test_many_workers_survive_disruption(deployment):
    assert deployment["spec"]["replicas"] >= 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_shutdown_and_security(deployment, container):
    pod = deployment["spec"]["template"]["spec"]
    # The kubelet's SIGKILL must come after the worker's graceful shutdown.
    assert pod["terminationGracePeriodSeconds"] > worker_graceful_shutdown().total_seconds()
    # The image's user (Dockerfile USER), never root.
    user = re.search(r"^USER (\d+):(\d+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        int(user.group(1)), int(user.group(2)))
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    if security.get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])


def mounted_file(pod: dict, container: dict, path: str) -> tuple[str, str, str]:
    """(volume kind, object name, key) of the file at ``path`` in the container."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = volumes[mount["name"]]
            kind = "secret" if "secret" in volume else "configMap"
            source = volume[kind]
            items = {i["path"]: i["key"] for i in source.get("items", [])}
            relative = path[len(prefix):]
            name = source["secretName"] if kind == "secret" else source["name"]
            return kind, name, items.get(relative, relative)
    raise AssertionError(f"nothing is mounted at {path}")


def test_credentials_and_keys_are_mounted_where_the_env_points(deployment, container, config):
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e for e in container["env"]}
    examples = [d for f, d in objects() if f in EXAMPLES]
    # The Google key from a Secret, the approval public keys from a ConfigMap.
    kind, name, key = mounted_file(pod, container, env["GOOGLE_APPLICATION_CREDENTIALS"]["value"])
    assert kind == "secret" and any(d["kind"] == "Secret" and d["metadata"]["name"] == name
                                    and key in d["stringData"] for d in examples)
    kind, name, key = mounted_file(pod, container, config["REMEDIATION_APPROVAL_PUBLIC_KEYS_FILE"])
    assert kind == "configMap" and any(d["kind"] == "ConfigMap" and d["metadata"]["name"] == name
                                       and key in d["data"] for d in examples)
    # Secret values come from secretKeyRef, never from the ConfigMap; the example has each key.
    for var in ("REMEDIATION_PROBE_TOKEN", "TEMPORAL_API_KEY"):
        assert var not in config
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert any(d["kind"] == "Secret" and d["metadata"]["name"] == ref["name"]
                   and ref["key"] in d["stringData"] for d in examples)
