"""The local stack the CLI and browser tests run against, started by devstack on free ports.

A module of its own, not a conftest fixture, so tests/browser can import it: each
directory has a conftest, and importing one by name would be ambiguous.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import Stack, StackConfig
from gcpsim.launcher import free_port

REPO = Path(__file__).resolve().parents[2]


def running_stack(tmp_path_factory: pytest.TempPathFactory, name: str, *,
                  identity: str = "claimed", with_approval: bool = False) -> Iterator[Stack]:
    """Temporal dev server + Web UI, simulator and worker; stopped when the generator ends.

    Meant for module-scoped fixtures (``yield from running_stack(...)``): two stacks at
    once are too much for a 2-core machine. By default the worker takes claimed identities
    and no approval service runs: these tests send direct updates naming the approver.
    """
    cfg = StackConfig(root=REPO, data_dir=tmp_path_factory.mktemp(name),
                      temporal_port=free_port(), ui_port=free_port(), sim_port=free_port(),
                      approval_port=free_port(), metrics_port=free_port(),
                      health_port=free_port(), identity=identity, with_approval=with_approval,
                      # Simulated GCP operations (connector scaling, certificates, a
                      # 300 s container start) run 200x faster, polled every 0.25 s;
                      # workflow timers stay real, so requests keep them short.
                      sim_speed=200, poll_interval_s=0.25)
    with Stack(cfg) as s:
        yield s


def verified_stack(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Stack]:
    """The stack as `./dev up` runs it: the approval service (dev issuer) and a worker that
    takes only verified identities by default."""
    yield from running_stack(tmp_path_factory, name, identity="verified", with_approval=True)
