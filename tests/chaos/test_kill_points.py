"""Fast checks of the chaos suite's own definitions (not marked ``chaos``: they run in the
default suite): the kill points cover the runbook, and "applied twice" means what it says."""

from __future__ import annotations

import copy

from runbook import activity_names as act
from tests.chaos.kill_points import DEFAULT_BOOK, OPERATION_OF
from tests.chaos.mutation_log import applied_twice
from tests.chaos.test_worker_kills import CLEANUP_KILL, LATER_KILLS, PHASE_1_KILLS

# Load-balancer steps: the simulator's default world is behind serverless NEGs, where the
# plan finds them not applicable and skips them (tests/e2e LOAD_BALANCER_STEPS).
NOT_RUN_IN_THE_SERVERLESS_WORLD = {act.CONFIGURE_HEALTH_CHECK, act.SET_BACKEND_SERVICE_TIMEOUT}


def test_kill_points_cover_every_mutating_step_of_the_default_runbook():
    killed = {p.step_id for points in [*PHASE_1_KILLS, *LATER_KILLS, [CLEANUP_KILL]]
              for p in points}
    uncovered = []
    for phase in DEFAULT_BOOK.phases:
        for group in phase.step_groups():
            ids = {s.id for s in group if s.kind == "mutate"
                   and s.activity not in NOT_RUN_IN_THE_SERVERLESS_WORLD}
            # A kill while one step of a parallel group runs cuts the whole group.
            if ids and not ids & killed:
                uncovered.append(sorted(ids))
    assert not uncovered, f"mutating steps with no kill point: {uncovered}"
    assert DEFAULT_BOOK.cleanup.step.id in killed
    for step_id in killed:
        assert DEFAULT_BOOK.step(step_id).activity in OPERATION_OF


SERVICE = "projects/p/locations/r/services/backend"


def _write(seq, before, after, method="PATCH", resource=SERVICE, api="run"):
    return {"seq": seq, "api": api, "method": method, "resource": resource,
            "request_id": None, "operation": f"op-{seq}", "before": before, "after": after}


def _svc(image: str, generation: int, traffic: str = "LATEST") -> dict:
    return {"generation": str(generation), "etag": f"e{generation}",
            "updateTime": f"t{generation}", "template": {"containers": [{"image": image}]},
            "traffic": [{"type": traffic, "percent": 100}]}


def test_a_deploy_reissued_after_its_own_restore_is_a_change_applied_twice():
    # The trace of issue 10: deploy (2->3), self-restore (3->4), crash, deploy again (4->5).
    log = [_write(1, _svc("a", 2), _svc("b", 3)), _write(2, _svc("b", 3), _svc("a", 4)),
           _write(3, _svc("a", 4), _svc("b", 5))]
    [found] = applied_twice(log)
    assert "template.containers" in found and "[1, 3]" in found


def test_a_deploy_and_its_restore_are_not_duplicates():
    log = [_write(1, _svc("a", 2), _svc("b", 3)), _write(2, _svc("b", 3), _svc("a", 4)),
           _write(3, _svc("a", 4), _svc("a", 5, traffic="PINNED"))]
    assert applied_twice(log) == []


def test_creates_compare_configuration_and_deletes_compare_the_resource():
    policy = {"name": "projects/p/alertPolicies/1", "displayName": "5xx",
              "creationRecord": {"mutateTime": "t1"}}
    other = copy.deepcopy(policy) | {"name": "projects/p/alertPolicies/2", "displayName": "db"}
    again = copy.deepcopy(policy) | {"name": "projects/p/alertPolicies/3",
                                     "creationRecord": {"mutateTime": "t2"}}
    create = [_write(1, None, policy, "POST", policy["name"], "monitoring"),
              _write(2, None, other, "POST", other["name"], "monitoring")]
    assert applied_twice(create) == []
    [found] = applied_twice([*create, _write(3, None, again, "POST", again["name"], "monitoring")])
    assert "[1, 3]" in found
    revision = f"{SERVICE}/revisions/backend-00001"
    deletes = [_write(4, {"name": revision}, None, "DELETE", revision),
               _write(5, {"name": revision}, None, "DELETE", revision)]
    assert applied_twice(deletes) != []
