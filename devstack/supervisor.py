"""Keep the stack up: a part that exits is restarted, with backoff, until Ctrl-C.

The stack's foreground loop calls :meth:`Supervisor.watch`. When a child exits it says
which one, with what code and where its log is, waits (1 s, doubling up to 30 s; back to
1 s once the part had stayed up for 60 s), starts it again with the same command and waits
for the same health checks as at start (``Stack.restart``), then says it is back. A part
that does not get healthy counts as another exit, so its backoff keeps growing.

Stopping is not this module's job: Ctrl-C / SIGTERM raise out of ``watch`` (including out
of a backoff wait) and the caller's ``Stack.stop()`` stops everything in reverse order.
Clock and sleep are injectable so tests drive the backoff without waiting for it.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from devstack.procs import ManagedProcess, StackError, log_tail


class Restartable(Protocol):
    procs: list[ManagedProcess]

    def restart(self, proc: ManagedProcess) -> None: ...


@dataclass
class _History:
    up_since: float  # clock() when the current run of the process was started
    quick_exits: int = 0  # exits in a row, each before the process had stayed up reset_after_s
    restarts: int = 0


def describe_exit(code: int) -> str:
    if code < 0:  # Popen's way of saying "killed by signal -code"
        try:
            return f"exited with code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"exited with code {code}"


class Supervisor:
    def __init__(self, stack: Restartable, say: Callable[[str], None] = print, *,
                 first_delay_s: float = 1.0, max_delay_s: float = 30.0, reset_after_s: float = 60.0,
                 poll_every_s: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.stack = stack
        self.say = say
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.reset_after_s = reset_after_s
        self.poll_every_s = poll_every_s
        self.clock = clock
        self.sleep = sleep
        now = clock()
        self._history = {p.name: _History(up_since=now) for p in stack.procs}

    def watch(self) -> None:
        """Restart whatever exits, forever; ends only by an exception (Ctrl-C, SIGTERM)."""
        while True:
            self.check_once()
            self.sleep(self.poll_every_s)

    def check_once(self) -> None:
        """Restart each part that has exited (backoff included); returns at once if none has."""
        for proc in list(self.stack.procs):
            code = proc.exited()
            if code is not None:
                self._restart(proc, code)

    def next_delay(self, proc: ManagedProcess) -> float:
        """The backoff before restarting ``proc`` now; counts this exit."""
        history = self._history.setdefault(proc.name, _History(up_since=self.clock()))
        if self.clock() - history.up_since >= self.reset_after_s:
            history.quick_exits = 0  # it had been healthy for a while: start over at 1 s
        delay = min(self.max_delay_s, self.first_delay_s * 2 ** history.quick_exits)
        history.quick_exits += 1
        history.restarts += 1
        return delay

    def _restart(self, proc: ManagedProcess, code: int) -> None:
        delay = self.next_delay(proc)
        history = self._history[proc.name]
        message = (f"{proc.name} {describe_exit(code)}; restarting in {delay:g}s "
                   f"(restart #{history.restarts})")
        self.say(f"\n{message}. Last lines of {proc.log_path}:\n{log_tail(proc.log_path, 10)}")
        _append(proc, message)
        # What the exited process left in its group (e.g. a child holding its port) goes
        # now, not after the backoff.
        proc.stop()
        self.sleep(delay)
        history.up_since = self.clock()
        try:
            self.stack.restart(proc)
        except StackError as err:
            # The process is stopped, so the next check counts it as exited again, with a
            # longer backoff.
            proc.stop()
            self.say(f"{proc.name} did not come back: {err}")
            return
        self.say(f"{proc.name} is back (pid {proc.pid}, log {proc.log_path})")


def _append(proc: ManagedProcess, message: str) -> None:
    """Note the restart in the process's own log, where someone reading the crash looks."""
    try:
        with open(proc.log_path, "a") as log:
            log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} devstack: {message}\n")
    except OSError:
        pass
