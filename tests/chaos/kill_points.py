"""Where a run is cut, as predicates over what the server and the simulator show.

Two kinds of point for a mutating step (or its compensation, ``undo=True``):
- ``in_flight``: the step's activity is running and its long-running operation is pending
  in the simulator (the change is issued, not finished);
- ``after_mutation``: the step's activity is running and its write has just appeared in
  the mutation log: the window between a mutation and the step's checkpoint (heartbeats
  are throttled, so the server may not yet know the operation the attempt started).
  Used where the operation is too short in simulated time to be caught pending.

The points the suite takes are listed in the tests; ``test_kill_points.py`` checks they
cover every mutating step of the default runbook (``runbook.default_runbook``), so a
step added to the runbook data needs a kill point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runbook import activity_names as act
from runbook.activity_io import undo_activity_id
from runbook.default_runbook import build_runbook
from runbook.definition import Runbook, StepSpec
from runbook.request import RemediationRequest
from tests.chaos.driver import Chaos, Predicate

DEFAULT_BOOK: Runbook = build_runbook(RemediationRequest())

# activity -> (simulator API of the operation it waits on, the param naming the resource)
OPERATION_OF = {
    act.SCALE_CONNECTOR: ("vpcaccess", "connector"),
    act.EXPAND_SQL: ("sqladmin", "instance"),
    act.RESTORE_SQL: ("sqladmin", "instance"),
    act.DEPLOY_REVISION: ("run", "service"),
    act.RESTORE_SERVICE: ("run", "service"),
    act.ROUTE_TRAFFIC_TO_LATEST: ("run", "service"),
    act.DELETE_OLD_REVISIONS: ("run", "service"),
    act.ENSURE_CERTIFICATE: ("compute", "certificate"),
    act.ENSURE_ALERT_POLICY: ("monitoring", "display_name"),
    act.CONFIGURE_HEALTH_CHECK: ("compute", "health_check"),
    act.SET_BACKEND_SERVICE_TIMEOUT: ("compute", "backend_service"),
}


@dataclass(frozen=True)
class Point:
    step_id: str
    kind: str  # in_flight | after_mutation
    undo: bool = False  # the step's compensation, during a rollback

    @property
    def name(self) -> str:
        return f"{'undo ' if self.undo else ''}{self.step_id} {self.kind.replace('_', ' ')}"

    @property
    def activity_id(self) -> str:
        return undo_activity_id(self.step_id) if self.undo else self.step_id


def _resource(step: StepSpec) -> str:
    _, param = OPERATION_OF[step.activity]
    return str(step.params[param])


# APIs whose mutations return at once (no long-running operation to wait on).
SYNCHRONOUS_APIS = frozenset({"monitoring"})


def predicate(chaos: Chaos, point: Point, since_seq: int = 0,
              book: Runbook = DEFAULT_BOOK) -> Predicate:
    step = book.step(point.step_id)
    activity = step.compensation if point.undo else step.activity
    api, _ = OPERATION_OF[activity]
    resource = _resource(step)

    async def running() -> Any:
        return [p for p in await chaos.pending_activities() if p.activity_id == point.activity_id]

    async def in_flight() -> Any:
        if not await running():
            return None
        ops = [o for o in await chaos.sim_operations(api)
               if resource in repr(o.get("ctx", {}))]
        return ops

    async def after_mutation() -> Any:
        # A synchronous create (Cloud Monitoring) completes milliseconds after its write:
        # waiting to see it still running would miss the point as often as not. There the
        # kill comes right after the write, whether or not the activity has reported yet.
        if api not in SYNCHRONOUS_APIS and not await running():
            return None
        writes = [m for m in await chaos.mutations(since_seq) if m["api"] == api and (
            resource in m["resource"] or resource in repr(m.get("after")))]
        return writes

    return in_flight if point.kind == "in_flight" else after_mutation
