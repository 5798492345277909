"""`./dev up` restarts a part of the stack that exits, with backoff, and says which.

Real child processes stand in for the dev server, simulator and worker: a small script
whose runs are counted and which crashes when the test tells it to. The supervisor's
clock and sleep are injected, so the backoff is observed without being waited for. The
last test kills the worker of a real `python -m devstack up`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from devstack.stack import Stack, StackConfig
from devstack.supervisor import Supervisor

REPO = Path(__file__).resolve().parents[2]

# Run n (counted in `runs`) exits 3 at once if `crash-n` already exists; otherwise it
# reports itself up in `up-<pid>`, then exits 3 when `crash-n` appears. With `spawn`, it
# first starts a grandchild in its process group and records its pid in `grandchild`.
FLAKY = textwrap.dedent("""
    import os, subprocess, sys, time
    from pathlib import Path
    d = Path(sys.argv[1])
    n = int((d / "runs").read_text()) + 1 if (d / "runs").exists() else 1
    (d / "runs").write_text(str(n))
    print(f"run {n}", flush=True)
    if (d / "spawn").exists():
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        (d / "grandchild").write_text(str(child.pid))
    if not (d / f"crash-{n}").exists():
        (d / f"up-{os.getpid()}").touch()
        while not (d / f"crash-{n}").exists():
            time.sleep(0.05)
    sys.exit(3)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


class FakeClock:
    """Time that moves only when the supervisor sleeps or the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.backoffs: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.backoffs.append(seconds)
        self.now += seconds


def _flaky(stack: Stack, work: Path):
    """Start the flaky process as a part of the stack; healthy once its run reported up."""
    return stack.launch("flaky", [sys.executable, "-c", FLAKY, str(work)], checks=lambda _since: [
        ("flaky", lambda: (work / f"up-{stack.procs[-1].pid}").exists())])


def _until(condition, step, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        step()
        time.sleep(0.05)


def test_exited_process_is_restarted_with_growing_backoff_that_resets(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    stack = Stack(StackConfig(root=REPO, data_dir=tmp_path / "data", start_timeout_s=20))
    said: list[str] = []
    clock = FakeClock()
    try:
        flaky = _flaky(stack, work)
        sup = Supervisor(stack, say=said.append, first_delay_s=1, max_delay_s=3, reset_after_s=60,
                         clock=clock, sleep=clock.sleep)
        sup.check_once()
        assert clock.backoffs == [] and said == []  # nothing exited, nothing to do

        # Runs 2 and 3 crash before they are healthy, run 4 comes up and stays.
        (work / "crash-2").touch()
        (work / "crash-3").touch()
        (work / "crash-1").touch()
        _until(lambda: any(" is back " in m for m in said), sup.check_once, "run 4 to come up")
        assert clock.backoffs == [1, 2, 3]  # doubling, capped at max_delay_s
        assert (work / "runs").read_text() == "4"
        log = stack.cfg.data / "logs" / "flaky.log"
        text = "\n".join(said)
        for k, delay in enumerate([1, 2, 3], start=1):
            assert f"flaky exited with code 3; restarting in {delay}s (restart #{k})" in text
        assert str(log) in text
        assert text.count("flaky did not come back") == 2  # runs 2 and 3
        assert said[-1] == f"flaky is back (pid {flaky.pid}, log {log})"
        assert flaky.exited() is None and (work / f"up-{flaky.pid}").exists()
        # The restarts are in the process's log too, between its runs.
        assert "devstack: flaky exited with code 3; restarting in 2s (restart #2)" in log.read_text()

        # Up for longer than reset_after_s: the next exit starts over at the first delay.
        clock.now += 61
        said.clear()
        (work / "crash-4").touch()
        _until(lambda: any(" is back " in m for m in said), sup.check_once, "run 5 to come up")
        assert clock.backoffs == [1, 2, 3, 1]
        assert "flaky exited with code 3; restarting in 1s (restart #4)" in "\n".join(said)
        assert flaky.exited() is None and (work / "runs").read_text() == "5"
        pid = flaky.pid
    finally:
        stack.stop()
    assert not _alive(pid)


def test_killed_process_is_named_with_its_signal(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    stack = Stack(StackConfig(root=REPO, data_dir=tmp_path / "data", start_timeout_s=20))
    said: list[str] = []
    clock = FakeClock()
    try:
        flaky = _flaky(stack, work)
        first_pid = flaky.pid
        sup = Supervisor(stack, say=said.append, clock=clock, sleep=clock.sleep)
        os.kill(first_pid, signal.SIGKILL)
        _until(lambda: any(" is back " in m for m in said), sup.check_once, "the restart")
        assert "flaky exited with code -9 (SIGKILL); restarting in 1s (restart #1)" in said[0]
        assert flaky.pid != first_pid and flaky.exited() is None
    finally:
        stack.stop()


# Like `python -m devstack up`: SIGTERM raises, whatever the main thread is doing, and the
# stack is stopped on the way out.
DRIVER = textwrap.dedent("""
    import signal, sys
    from pathlib import Path
    from devstack.stack import Stack, StackConfig
    from devstack.supervisor import Supervisor

    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    repo, data, work, flaky = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    stack = Stack(StackConfig(root=repo, data_dir=data, start_timeout_s=20),
                  say=lambda m: print(m, flush=True))
    try:
        steady = stack.launch("steady", [sys.executable, "-c", "import time; time.sleep(600)"])
        print(f"steady pid {steady.pid}", flush=True)
        stack.launch("flaky", [sys.executable, "-c", flaky, str(work)], checks=lambda _since: [
            ("flaky", lambda: (work / f"up-{stack.procs[-1].pid}").exists())])
        Supervisor(stack, say=lambda m: print(m, flush=True), first_delay_s=300,
                   max_delay_s=300, poll_every_s=0.05).watch()
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        stack.stop()
        print("stopped.", flush=True)
""")


def test_stop_during_backoff_leaves_no_process_behind(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "spawn").touch()  # the flaky run leaves a grandchild in its process group
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(REPO), str(tmp_path / "data"),
                               str(work), FLAKY], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    # A driver that never says what the test waits for is killed, so reading ends.
    watchdog = threading.Timer(60, driver.kill)
    watchdog.start()
    try:

        def read_until(text: str) -> None:
            while not any(text in line for line in lines):
                line = driver.stdout.readline()
                assert line, "".join(lines)
                lines.append(line)

        read_until("flaky: ready")
        (work / "crash-1").touch()
        read_until("restarting in 300s")  # now in its backoff
        driver.send_signal(signal.SIGTERM)
        rest, _ = driver.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if driver.poll() is None:
            driver.kill()
    out = "".join(lines) + rest
    assert "flaky exited with code 3; restarting in 300s (restart #1)" in out
    assert driver.returncode == 0 and "stopped." in out, out
    assert (work / "runs").read_text() == "1"  # not restarted during the backoff
    steady_pid = int(out.split("steady pid ")[1].split()[0])
    flaky_pid = int(next(p.name[3:] for p in work.glob("up-*")))
    grandchild_pid = int((work / "grandchild").read_text())
    for pid in (steady_pid, flaky_pid, grandchild_pid):
        assert not _alive(pid), f"pid {pid} survived"


def test_dev_up_restarts_a_killed_worker_and_still_stops_cleanly(tmp_path):
    from gcpsim.launcher import free_port

    argv = [sys.executable, "-m", "devstack", "up", "--data-dir", str(tmp_path / "data"),
            "--temporal-port", str(free_port()), "--ui-port", str(free_port()),
            "--sim-port", str(free_port())]
    up = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(180, up.kill)
    watchdog.start()
    lines: list[str] = []

    def read_until(text: str) -> str:
        while True:
            line = up.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
            if text in line:
                return line

    try:
        first = int(read_until("worker: ready (pid ").split("pid ")[1].split(",")[0])
        read_until("Press Ctrl-C")
        os.kill(first, signal.SIGKILL)
        read_until("worker exited with code -9 (SIGKILL); restarting in 1s (restart #1)")
        back = read_until("worker is back (pid ")
        second = int(back.split("pid ")[1].split(",")[0])
        assert second != first and _alive(second)
        pids = [int(p) for p in set(re.findall(r"ready \(pid (\d+)", "".join(lines)))]
        up.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = up.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0 and "stopped." in rest, rest
    assert "stopping worker" in rest  # the restarted one, stopped like the others
    for pid in pids:
        assert not _alive(pid), f"pid {pid} survived"
