"""The Temporal UI's Current Details for each situation an operator meets (pure function).

Every status here is a real RunStatus around a plan built by runbook.plan from the
default runbook, as the workflow holds it; the messages it tells people to send are
checked against the models the workflow validates them with.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from runbook.default_runbook import build_runbook
from runbook.messages import FailureDecisionRequest, GateApproval, PauseRequest
from runbook.plan import DriftRow, build_plan
from runbook.request import RemediationRequest
from runbook.status import (
    Approval,
    GateRecord,
    PauseRecord,
    PhaseRecord,
    RunState,
    RunStatus,
    StepRecord,
    StepStatus,
)
from tests.runbook.test_plan_preflight import diagnosis
from workflows.current_details import GATE_ROWS, MAX_LINES, render_current_details

NOW = datetime(2026, 1, 2, 3, 0, 0, tzinfo=timezone.utc)
OLD_REVISION = "netra-backend-staging-00000-old"


def run_status(state: RunState = RunState.AWAITING_APPROVAL, phase: int = 1) -> RunStatus:
    """A run of the default runbook at ``phase``, every gate defined, none open."""
    req = RemediationRequest.model_validate({})
    book = build_runbook(req)
    diag = diagnosis("INSTANCE_GROUP")
    backend = diag.run_services[0]
    backend.revisions = [OLD_REVISION, backend.latest_ready_revision]  # cleanup has work
    plan = build_plan(req, book, diag)
    steps = [StepRecord(id=st.id, phase=ph.number, summary=st.summary, activity=st.activity,
                        kind=st.kind, reversible=st.reversible)
             for ph in book.phases for st in ph.steps]
    c = book.cleanup.step
    steps.append(StepRecord(id=c.id, phase=0, summary=c.summary, activity=c.activity,
                            kind=c.kind, reversible=c.reversible))
    phases = [PhaseRecord(number=ph.number, title=ph.title, owner=ph.owner, budget_s=ph.budget_s,
                          hard_limit_s=ph.hard_limit_s, escalation=ph.escalation,
                          status="RUNNING" if ph.number == phase else "PENDING",
                          budget_at=NOW + timedelta(hours=1)) for ph in book.phases]
    gates = [GateRecord(id=ph.gate.id, title=ph.gate.title, phase=ph.number) for ph in book.phases]
    gates.append(GateRecord(id=book.cleanup.gate.id, title=book.cleanup.gate.title, phase=0))
    return RunStatus(incident_id="1278", requested_by="carol", state=state, current_phase=phase,
                     plan=plan, phases=phases, gates=gates, steps=steps, started_at=NOW)


def open_gate(s: RunStatus, gate_id: str, **fields) -> GateRecord:
    g = next(g for g in s.gates if g.id == gate_id).model_copy(update={
        "status": "OPEN", "opened_at": NOW, "remind_at": NOW + timedelta(minutes=15),
        "escalate_at": NOW + timedelta(minutes=30), "timeout_at": NOW + timedelta(hours=2),
        **fields})
    s.pending_gate = g
    return g


def payloads(details: str) -> list[dict]:
    """Every JSON message the details tell people to send."""
    return [json.loads(m) for m in re.findall(r"`(\{.*?\})`", details)]


def test_an_approval_gate_says_who_may_approve_and_what_it_will_change():
    s = run_status(phase=2)
    open_gate(s, "phase-2", min_approvals=2, approvers_allowed=["alice", "bob"],
              two_person_rule=True,
              approvals=[Approval(gate="phase-2", approver="alice", at=NOW)])
    d = render_current_details(s)
    assert "- May approve: alice, bob; 2 distinct approvers; not carol (two-person rule)" in d
    assert "- Approved so far: alice" in d
    assert "1 of 2 approval(s)" in d and "times out 2026-01-02 05:00:00Z" in d
    # Phase 2's plan rows only, current → desired, bounded.
    assert "- Will change (18):" in d
    assert "  - `netra-backend-staging env.DATABASE_MAX_OVERFLOW`: null → 8" in d
    assert "  - and 10 more" in d
    assert "staging-connector machineType" not in d  # phase 1's
    rows = [line for line in d.splitlines() if line.startswith("  - `")]
    assert len(rows) == GATE_ROWS
    # The approval it shows is one the workflow accepts, pinned to this plan.
    [approve, pause] = sorted(payloads(d), key=len, reverse=True)
    assert approve == {"gate": "phase-2", "approver": "<you>", "plan_digest": s.plan.digest}
    GateApproval.model_validate(approve)
    assert "update or signal `pause`" in d and PauseRequest.model_validate(pause)
    assert "IRREVERSIBLE" not in d and "None" not in d


def test_phase_1_marks_irreversible_rows_and_anyone_may_approve():
    s = run_status(phase=1)
    open_gate(s, "phase-1")
    d = render_current_details(s)
    assert "- May approve: anyone" in d and "two-person" not in d and "distinct" not in d
    assert "  - `staging-connector maxInstances`: 3 → 10 (irreversible)" in d
    assert "  - `netra-staging-db settings.tier`: db-custom-1-3840 → db-custom-2-7680" in d
    assert "- Will change (7):" in d and "more" not in d


def test_the_cleanup_gate_is_irreversible():
    s = run_status(phase=4)
    s.current_phase = None
    open_gate(s, "cleanup-revisions", two_person_rule=True)
    d = render_current_details(s)
    assert "**IRREVERSIBLE**" in d
    [row] = [line for line in d.splitlines() if "revisions`" in line]
    assert row.startswith(f"  - `netra-backend-staging revisions`: [{OLD_REVISION}, ")
    assert row.endswith("→ only the serving revision (irreversible)")
    assert "not carol (two-person rule)" in d


def test_drift_since_the_plan_asks_to_reapprove_with_the_new_digest():
    s = run_status(phase=2)
    s.plan.rebuilt_from = "0123456789abcdef"
    drift = [DriftRow(step_id="configure-backend", resource="netra-backend-staging",
                      field="memory", planned_from="512Mi", now="2Gi"),
             DriftRow(step_id="scale-connector", resource="projects/p/locations/r/connectors/staging-connector",
                      field="machineType", planned_from="e2-standard-4", now="e2-micro", kind="reverted")]
    open_gate(s, "phase-2", drift=drift)
    d = render_current_details(s)
    assert (f"- **Targets drifted** since the plan: re-approve with the new digest "
            f"`{s.plan.digest}`, was `0123456789abcdef`") in d
    assert "  - `netra-backend-staging memory`: planned from 512Mi, now 2Gi" in d
    assert ("  - `staging-connector machineType`: planned from e2-standard-4, now e2-micro "
            "(a finished phase's change is no longer in force)") in d


def test_a_failed_drift_check_is_shown():
    s = run_status(phase=3)
    open_gate(s, "phase-3", drift_check_error="diagnose failed: 503 from compute")
    d = render_current_details(s)
    assert "- Drift check could not run (plan kept): diagnose failed: 503 from compute" in d


def test_a_decision_gate_shows_the_failure_and_the_exact_updates_to_send():
    s = run_status(RunState.AWAITING_DECISION, phase=2)
    failed = next(st for st in s.steps if st.id == "configure-backend")
    failed.status, failed.attempts, failed.error = StepStatus.FAILED, 3, "quota exceeded: CPUS"
    g = GateRecord(id="decide-configure-backend", title="configure-backend failed", kind="decision",
                   phase=2, two_person_rule=True, step_id="configure-backend",
                   failure=failed.error, attempts=3, options=["retry", "skip", "rollback"],
                   in_force=["scale-connector", "expand-sql"])
    s.gates.append(g)
    open_gate(s, g.id)
    d = render_current_details(s)
    assert "- **Step `configure-backend` FAILED** after 3 attempt(s)" in d
    assert "rolls back at 2026-01-02 05:00:00Z" in d
    assert "- Error: quota exceeded: CPUS" in d
    assert "- In force: scale-connector, expand-sql" in d
    assert "not carol (two-person rule; rollback always allowed)" in d
    sent = [p for p in payloads(d) if "decision" in p]
    assert [p["decision"] for p in sent] == ["retry", "skip", "rollback"]
    for p in sent:
        assert p["gate"] == "decide-configure-backend" and p["by"] == "<you>"
        FailureDecisionRequest.model_validate(p)
    assert "approve_gate" not in d and "Will change" not in d


def test_paused_shows_who_why_since_and_how_to_resume():
    s = run_status(RunState.PAUSED, phase=2)
    s.pause = PauseRecord(by="gina", reason="db vacuum running", requested_at=NOW,
                          held_at=NOW + timedelta(seconds=40), held_before="step configure-backend",
                          freeze_deadlines=True)
    d = render_current_details(s)
    assert ("- **PAUSED** by gina since 2026-01-02 03:00:40Z: db vacuum running; holding before "
            "step configure-backend") in d
    assert "- Deadlines are frozen while it holds" in d
    [resume] = payloads(d)
    assert "update or signal `resume`" in d and PauseRequest.model_validate(resume)
    assert "`pause`" not in d


def test_pausing_waits_for_the_step_in_flight():
    s = run_status(RunState.RUNNING, phase=2)
    next(st for st in s.steps if st.id == "configure-backend").status = StepStatus.RUNNING
    s.pause = PauseRecord(by="gina", requested_at=NOW)
    d = render_current_details(s)
    assert ("- **PAUSING** after configure-backend: requested by gina at 2026-01-02 03:00:00Z: "
            "no reason given") in d
    assert "- Budgets and gate deadlines keep running while paused" in d


@pytest.mark.parametrize("state", [RunState.SUCCEEDED, RunState.ROLLING_BACK])
def test_no_pause_offered_when_it_would_be_refused(state):
    s = run_status(state, phase=4)
    s.outcome_reason = "all phases succeeded"
    d = render_current_details(s)
    assert "pause" not in d.lower() and "all phases succeeded" in d


def test_the_worst_case_stays_short():
    s = run_status(phase=2)
    drift = [DriftRow(step_id="x", resource=f"r{i}", field="f" * 200, planned_from="a" * 500,
                      now=list(range(200))) for i in range(30)]
    open_gate(s, "phase-2", min_approvals=3, approvers_allowed=["alice", "bob", "dave"],
              two_person_rule=True, drift=drift, drift_check_error="x" * 5000,
              approvals=[Approval(gate="phase-2", approver="alice", at=NOW)])
    s.pause = PauseRecord(by="gina", reason="r", requested_at=NOW, held_at=NOW, held_before="gate phase-2")
    s.outcome_reason = "y" * 5000
    d = render_current_details(s)
    assert len(d.splitlines()) <= MAX_LINES
    # Values are shortened; only a field name as long as the request gave it is not.
    assert max(len(line) for line in d.splitlines()) < 400
    assert render_current_details(s) == d  # a pure function of the status
