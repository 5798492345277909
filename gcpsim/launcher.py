"""Start the simulator as a subprocess (tests, the worker's dev stack, CI).

    with start_simulator(speed=600) as sim:
        client = run_v2.ServicesClient(..., client_options=ClientOptions(api_endpoint=sim.endpoint))
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Simulator:
    endpoint: str  # "http://127.0.0.1:PORT": api_endpoint for run/vpcaccess/sqladmin/secretmanager/monitoring/redis
    port: int
    host: str
    data_dir: Path
    process: subprocess.Popen
    log_path: Path

    @property
    def compute_endpoint(self) -> str:
        """Compute's discovery client needs the service path in api_endpoint."""
        return f"{self.endpoint}/compute/v1/"

    def admin(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """Call the /_sim/ admin API (or any path) and return the decoded JSON."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.endpoint + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200 and json.loads(resp.read()).get("ok") is True
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextmanager
def start_simulator(
    port: int | None = None,
    data_dir: str | Path | None = None,
    speed: float = 60.0,
    host: str = "127.0.0.1",
    startup_timeout: float = 30.0,
    log_level: str = "warning",
) -> Iterator[Simulator]:
    """Run ``python -m gcpsim`` on a free loopback port until the block exits.

    ``data_dir`` defaults to a fresh temporary directory (removed afterwards); pass the
    same directory twice to restart a simulator on its persisted world."""
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="gcpsim-")
        data_dir = tmp.name
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    log_path = data_dir / f"gcpsim-{port}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "gcpsim", "--port", str(port), "--host", host, "--data-dir", str(data_dir),
           "--speed", str(speed), "--log-level", log_level]
    log_file = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    endpoint = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while not _healthy(endpoint + "/_sim/healthz"):
            if proc.poll() is not None:
                raise RuntimeError(f"gcpsim exited with {proc.returncode}; see {log_path}:\n"
                                   + log_path.read_text(errors="replace")[-2000:])
            if time.monotonic() > deadline:
                raise TimeoutError(f"gcpsim did not become healthy within {startup_timeout}s; see {log_path}")
            time.sleep(0.05)
        yield Simulator(endpoint=endpoint, port=port, host=host, data_dir=data_dir, process=proc,
                        log_path=log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        log_file.close()
        if tmp is not None:
            tmp.cleanup()
