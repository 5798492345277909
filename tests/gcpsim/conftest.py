"""Fixtures for the gcpsim suite: one simulator process per test module (started with
the real launcher in a tmp data dir), reset to the default world before every test."""
from __future__ import annotations

import pytest
from gcpsim_helpers import SPEED, discovery

from gcpsim.launcher import Simulator, start_simulator


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Simulator:
    with start_simulator(data_dir=tmp_path_factory.mktemp("gcpsim"), speed=SPEED) as sim:
        yield sim


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    server.admin("POST", "/_sim/reset")
    return server


@pytest.fixture
def compute(sim: Simulator):
    """The Compute v1 discovery client (api_endpoint=.../compute/v1/)."""
    return discovery(sim, "compute", "v1")
