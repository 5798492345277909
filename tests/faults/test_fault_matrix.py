"""Every mutating step of the runbook under every fault that can reach it (tests/faults/
matrix.py), on the real activities against gcpsim through RemediationWorkflow.

The whole matrix is marked ``faults`` (excluded by default; run it with ``-m faults``);
``test_representative_cells`` runs a few cells in every ``./dev test``.
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus

from runbook.status import StepStatus
from tests.history_scan import secrets_in
from tests.workflow.harness import STARTED_RUNS
from tests.faults.driver import FAST_SOAK, run_cell
from tests.faults.matrix import Cell, cells
from tests.faults.verdict import (
    check_accounting,
    check_fault_fired,
    check_hang_reason,
    check_kept,
    check_rolled_back,
)

# Every step applies on instance-group backends (behind serverless NEGs the load-balancer
# steps are skipped as not applicable, and a fault on them would test nothing).
WORLD = "instance-group"
# A hang is waited out in real time (the test server does not skip time while an activity
# runs), so the hung step's phase gets a short budget: its hard limit is the bound.
HANG_BUDGET_S = 6
HANG_HARD_LIMIT_FACTOR = 1.5
# Real seconds a cell may take. A hang cell: the phases before (a few seconds), the hard
# limit, the cancellation reaching the activity (at its next heartbeat, <= heartbeat_s)
# and a rollback that has its own deadline.
WALL_LIMIT_S = 150
HANG_WALL_LIMIT_S = 45

# Cells failing for a known product defect (cell id -> reason), marked xfail(strict=True)
# so a fix shows as XPASS. Empty: the defects this matrix found are fixed (a hung
# operation is reported "outcome unknown", not applied; a failed traffic update is resent).
KNOWN_DEFECTS: dict[str, str] = {}

# Cells whose documented bound is real time the suite cannot spend: the test server does
# not skip time while an activity runs, and these wait on the hung operation itself.
_UNDO_WAITS = ("the undo (restore_service) waits on the hung rollout until its deadline "
               "(workflows/saga.py UNDO_DEADLINE, 30 min of real time here)")
UNAFFORDABLE: dict[str, str] = {
    **{f"{sid}/operation-hang": _UNDO_WAITS
       for sid in ("vpc-access-auth", "deploy-incident-env", "route-traffic",
                   "configure-backend")},
    "delete-old-revisions/operation-hang": (
        "cleanup is bounded by its own attempts: 3 x 600 s start-to-close, 30 min of "
        "real time here"),
}

# In `./dev test`: one transient cell (retried to SUCCEEDED) and one permanent one (a
# complete rollback); CI runs every cell with -m faults.
REPRESENTATIVE = ("expand-sql/503-burst", "deploy-incident-env/403")

CELLS = cells()


def _param(cell: Cell, *marks: Any) -> Any:
    if cell.id in KNOWN_DEFECTS:
        marks = (*marks, pytest.mark.xfail(strict=True, reason=KNOWN_DEFECTS[cell.id]))
    if cell.id in UNAFFORDABLE:
        marks = (*marks, pytest.mark.skip(reason=UNAFFORDABLE[cell.id]))
    return pytest.param(cell, id=cell.id, marks=marks)


def request_for(cell: Cell) -> dict[str, Any]:
    # Each cell proves the automatic rollback; decision gates have their own scenarios.
    request: dict[str, Any] = {"soak": FAST_SOAK, "on_step_failure": "rollback"}
    if cell.kind.id == "operation-hang" and cell.target.phase is not None:
        request["budgets"] = {f"phase_{cell.target.phase.number}_s": HANG_BUDGET_S,
                              "hard_limit_factor": HANG_HARD_LIMIT_FACTOR}
    return request


def hard_limit_s(cell: Cell) -> int:
    return int(HANG_BUDGET_S * HANG_HARD_LIMIT_FACTOR)


async def check_cell(fault_env, sim, cell: Cell) -> None:
    try:
        await _check_cell(fault_env, sim, cell)
    except AssertionError as err:
        print(f"FAILED {cell.id}: {str(err)[:1500]}")
        raise


async def _check_cell(fault_env, sim, cell: Cell) -> None:
    hang = cell.kind.id == "operation-hang"
    started: list = []
    try:
        run = await run_cell(
            fault_env.env, sim, world=WORLD, request=request_for(cell),
            step_ids=cell.target.step_ids, fault=cell.fault(), hang=hang,
            wall_limit_s=HANG_WALL_LIMIT_S if hang else WALL_LIMIT_S, started_runs=started)
    finally:
        await _replace_env_if_left_open(fault_env, started)
    print(f"{cell.id}: {run.report.outcome.value} in {run.wall_s:.1f}s wall: {run.report.reason}")
    check_fault_fired(cell, run)
    att = check_accounting(cell, run)
    if cell.target.phase is None:  # cleanup: its failure never undoes the remediation
        check_kept(cell, run, att)
        if not cell.transient:
            rec = next(s for s in run.status.steps if s.id == cell.target.step_ids[0])
            assert rec.status != StepStatus.SUCCEEDED and run.report.revisions_left_in_place, (
                f"{cell.id}: the failed cleanup must report the revisions it left")
        if hang:
            check_hang_reason_of_step(cell, run)
    elif cell.transient:
        check_kept(cell, run, att)
    else:
        check_rolled_back(cell, run, att)
        if hang:
            check_hang_reason(cell, run)
            phase = run.status.phases[cell.target.phase.number - 1]
            step = cell.target.steps[0]
            bound = hard_limit_s(cell) + (step.heartbeat_s or 0)
            assert phase.duration_s <= bound, (
                f"{cell.id}: phase {phase.number} ran {phase.duration_s:.0f}s, past its hard "
                f"limit {hard_limit_s(cell)}s + one heartbeat")


async def _replace_env_if_left_open(fault_env, started: list) -> None:
    """A run that never ended keeps an activity in flight, which holds the test server's
    clock at real time for every later cell: scan its history for secrets (as the suite's
    autouse check would), then start a fresh server."""
    if not started:
        return
    handle = started[0]
    desc = await handle.describe()
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return
    found = secrets_in(await handle.fetch_history())
    STARTED_RUNS.remove(handle)
    await fault_env.replace()
    assert not found, f"secret value(s) {found} in the history of {handle.id}"


def check_hang_reason_of_step(cell: Cell, run) -> None:
    rec = next(s for s in run.status.steps if s.id == cell.target.step_ids[0])
    text = f"{rec.detail} {rec.error or ''}".lower()
    assert "timed out" in text or "deadline" in text, (
        f"{cell.id}: the hung cleanup does not say it timed out: {rec.detail!r} {rec.error!r}")


@pytest.mark.faults
@pytest.mark.parametrize("cell", [_param(c) for c in CELLS])
async def test_fault_matrix(fault_env, fault_sim, cell: Cell) -> None:
    await check_cell(fault_env, fault_sim, cell)


@pytest.mark.parametrize("cell", [_param(c) for c in CELLS if c.id in REPRESENTATIVE])
async def test_representative_cells(fault_env, fault_sim, cell: Cell) -> None:
    await check_cell(fault_env, fault_sim, cell)


def test_the_matrix_covers_every_mutating_step() -> None:
    from runbook.default_runbook import build_runbook
    from runbook.request import RemediationRequest
    from tests.faults.matrix import mutating_steps

    covered = {sid for c in CELLS for sid in c.target.step_ids}
    assert covered == {s.id for s, _ in mutating_steps(build_runbook(RemediationRequest()))}
    ids = {c.id for c in CELLS}
    assert set(REPRESENTATIVE) | set(KNOWN_DEFECTS) | set(UNAFFORDABLE) <= ids
