"""What a fault-matrix cell must show, checked against the report, the status and the
simulator's mutation log.

- The run ends SUCCEEDED (transient fault) or rolled back (permanent fault, hang), and
  the fault really fired.
- Every entry of the mutation log is put down to the step or undo that wrote it; the
  report claims exactly the steps that wrote one (never a change the log does not show),
  and keeps or reverts each as the outcome says.
- A rolled-back run leaves the configuration as it found it, except what the report lists
  as left in place (irreversible changes).
- No change is written twice; the attempts the report gives are the attempts the worker ran.
- A hang ends at its documented bound, with a reason naming the step and the timeout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from runbook.activity_io import undo_activity_id
from runbook.default_runbook import build_runbook
from runbook.request import RemediationRequest
from runbook.status import RunState, StepStatus
from tests.e2e.world import config
from tests.faults.driver import CellRun
from tests.faults.matrix import MUTATING_CALLS, Cell

# Fields every write changes (or that name the write rather than the setting).
VOLATILE = {"etag", "updateTime", "createTime", "generation", "observedGeneration",
            "fingerprint", "creationTimestamp", "id", "selfLink", "uid", "revision",
            "latestCreatedRevision", "latestReadyRevision", "conditions", "terminalCondition",
            "reconciling", "trafficStatuses", "name", "state", "settingsVersion"}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


@dataclass
class Attribution:
    """Which step (forward) or undo wrote each mutation log entry."""

    forward: dict[str, list[dict[str, Any]]]
    undo: dict[str, list[dict[str, Any]]]
    unexplained: list[dict[str, Any]]


def attribute(run: CellRun) -> Attribution:
    book = build_runbook(RemediationRequest())
    steps = {s.id: s for p in book.phases for s in p.steps if s.kind == "mutate"}
    steps[book.cleanup.step.id] = book.cleanup.step
    undo_ids = {undo_activity_id(sid): sid for sid in steps}
    forward: dict[str, list] = {}
    undo: dict[str, list] = {}
    explained: set[int] = set()
    for m in run.mutations:
        for a in run.attempts:
            if not a.first_seq < m["seq"] <= a.last_seq:
                continue
            sid = a.activity_id if a.activity_id in steps else undo_ids.get(a.activity_id)
            if sid is None:
                continue
            step = steps[sid]
            call = MUTATING_CALLS[step.activity]
            if any(t in m["resource"] for t in call.touches(step.params)) \
                    and call.owns(step.params, m):
                (forward if a.activity_id == sid else undo).setdefault(sid, []).append(m)
                explained.add(m["seq"])
                break
    unexplained = [m for m in run.mutations if m["seq"] not in explained]
    return Attribution(forward, undo, unexplained)


def _write_key(m: dict[str, Any]) -> tuple:
    """A write, without what every write changes: two entries with one key set the same
    configuration on the same resource (alert policies: by display name)."""
    body = m.get("after") if m.get("after") is not None else m.get("before") or {}
    who = body.get("displayName") if m["api"] == "monitoring" else m["resource"]
    return (m["api"], m["method"], who,
            json.dumps(_stable(m.get("after")), sort_keys=True, default=str))


def _short(m: dict[str, Any]) -> str:
    return f"#{m['seq']} {m['api']} {m['method']} {m['resource']}"


def check_fault_fired(cell: Cell, run: CellRun) -> None:
    assert run.armed, f"{cell.id}: no target step ({cell.target.step_ids}) ever started"
    fired = sum(f["fired"] for f in run.faults)
    assert fired >= 1, f"{cell.id}: fault {cell.fault()} never fired: it tests nothing"


def check_accounting(cell: Cell, run: CellRun) -> Attribution:
    att = attribute(run)
    assert not att.unexplained, (
        f"{cell.id}: mutations no step or undo accounts for: "
        f"{[_short(m) for m in att.unexplained]}")
    report = run.report
    claimed = {c.step_id for c in report.changes_applied}
    wrote = set(att.forward)
    assert claimed <= wrote, (
        f"{cell.id}: the report claims {sorted(claimed - wrote)} applied but the mutation log "
        "shows no change by them")
    assert wrote <= claimed, (
        f"{cell.id}: the mutation log shows changes by {sorted(wrote - claimed)} that the report "
        f"does not list: {[_short(m) for s in wrote - claimed for m in att.forward[s]]}")
    # The same step (or the same undo) writing the same configuration twice: a change
    # applied twice. (An undo may legitimately write what an earlier step had written.)
    writer = {m["seq"]: sid for sid, ms in att.forward.items() for m in ms}
    writer |= {m["seq"]: f"undo {sid}" for sid, ms in att.undo.items() for m in ms}
    by_write: dict[tuple, list[dict[str, Any]]] = {}
    # A write whose operation failed did not take effect as a change: its retry is allowed.
    for m in (m for m in run.mutations if m.get("operation") not in run.failed_operations):
        by_write.setdefault((writer.get(m["seq"]), *_write_key(m)), []).append(m)
    twice = [[f"{_short(m)} by {writer.get(m['seq'], '?')}" for m in ms]
             for ms in by_write.values() if len(ms) > 1]
    assert not twice, f"{cell.id}: the same change was written more than once: {twice}"
    records = {s.id: s for s in run.status.steps}
    for sid in cell.target.step_ids:
        seen = max((a.attempt for a in run.attempts if a.activity_id == sid), default=0)
        assert records[sid].attempts == seen, (
            f"{cell.id}: {sid} reports {records[sid].attempts} attempt(s); the worker ran {seen}")
    return att


def check_kept(cell: Cell, run: CellRun, att: Attribution) -> None:
    """SUCCEEDED: every change applied and kept; no undo wrote anything."""
    report = run.report
    assert report.outcome == RunState.SUCCEEDED, (
        f"{cell.id}: ended {report.outcome.value}: {report.reason}")
    assert not report.changes_reverted and not att.undo, (
        f"{cell.id}: a succeeded run reverted {[c.step_id for c in report.changes_reverted]}")
    records = {s.id: s for s in run.status.steps}
    for sid in cell.target.step_ids:
        if sid != "delete-old-revisions" or cell.transient:
            assert records[sid].status == StepStatus.SUCCEEDED, (
                f"{cell.id}: {sid} is {records[sid].status.value}: {records[sid].error}")


def check_rolled_back(cell: Cell, run: CellRun, att: Attribution) -> None:
    """Rolled back: every applied change undone or reported left in place, and the world's
    configuration back as it was (except those left in place)."""
    report = run.report
    assert report.outcome == RunState.ROLLED_BACK, (
        f"{cell.id}: ended {report.outcome.value}, not ROLLED_BACK: {report.reason}")
    reverted = {c.step_id for c in report.changes_reverted}
    left = {c.step_id for c in report.changes_left_in_place}
    for c in report.changes_applied:
        assert c.step_id in reverted | left, f"{cell.id}: {c.step_id} neither reverted nor left in place"
    book = build_runbook(RemediationRequest())
    for sid in left:
        assert not book.step(sid).reversible, (
            f"{cell.id}: reversible {sid} left in place: its undo failed")
    kept = {m["resource"] for sid in left for m in att.forward.get(sid, [])}
    # Sent with its operation still running when the step ended: the report says "outcome
    # unknown"; an irreversible one (no undo) may still be mid-operation on its resource.
    unknown = {c.step_id: c.resource for c in report.changes_outcome_unknown}
    assert not set(unknown) & {c.step_id for c in report.changes_applied}, (
        f"{cell.id}: {sorted(unknown)} reported both applied and outcome unknown")
    kept |= {res for sid, res in unknown.items() if not book.step(sid).reversible}
    before = {k: v for k, v in config(run.state_before).items() if k not in kept}
    after = {k: v for k, v in config(run.state_after).items() if k not in kept}
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, (
        f"{cell.id}: rolled back but these differ from before the run: "
        + "; ".join(f"{k}: {before.get(k)} -> {after.get(k)}" for k in changed))


def check_hang_reason(cell: Cell, run: CellRun) -> None:
    """The run says which step hung and that it ran out of time."""
    reason = run.report.reason
    assert any(sid in reason for sid in cell.target.step_ids), (
        f"{cell.id}: the outcome reason does not name the hung step: {reason!r}")
    assert any(w in reason.lower() for w in ("timed out", "time out", "hard limit", "deadline")), (
        f"{cell.id}: the outcome reason does not say the step ran out of time: {reason!r}")
