"""The dev server and the simulator killed and restarted under a run.

- The dev server SIGKILLed while a gate waits, and again while a mutating step waits on
  its operation, each time started again on the same database file and port: the run
  finishes, and the worker process lives through both outages.
- gcpsim SIGKILLed while a Cloud SQL and a VPC connector operation are in flight, and
  again during a Cloud Run rollout, each time started again on the same data directory
  and port: retries and idempotent resumption carry the run to SUCCEEDED with no change
  applied twice.
"""

from __future__ import annotations

import pytest

from tests.chaos.expectations import (
    assert_no_change_applied_twice,
    assert_succeeded_like_a_clean_run,
)
from tests.chaos.kill_points import Point, predicate
from tests.chaos.test_worker_kills import REQUEST

pytestmark = pytest.mark.chaos


async def test_server_and_simulator_restarts_mid_run(chaos):
    chaos.held_gates.add("phase-1")
    await chaos.start(REQUEST)
    await chaos.restart_server_at("gate phase-1 waiting", chaos.gate_pending("phase-1"))
    assert chaos.worker.alive(), "the worker exited when the server went away"
    chaos.release("phase-1")

    await chaos.restart_sim_at("SQL tier change in flight",
                               predicate(chaos, Point("expand-sql", "in_flight")))
    await chaos.restart_server_at("deploy-incident-env rollout in flight",
                                  predicate(chaos, Point("deploy-incident-env", "in_flight")))
    assert chaos.worker.alive(), "the worker exited when the server went away"
    await chaos.restart_sim_at("configure-backend rollout in flight",
                               predicate(chaos, Point("configure-backend", "in_flight")))
    report, st = await chaos.finish()

    assert len(chaos.kills) == 4 and chaos.server.restarts >= 2
    assert chaos.worker.started == 1, "one worker process carried the whole run"
    assert_succeeded_like_a_clean_run(report, st)
    await assert_no_change_applied_twice(chaos)
