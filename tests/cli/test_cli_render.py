"""Rendering of RunStatus, RemediationReport and Plan (no server needed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from rich.console import Console

from cli.render import countdown, fmt_duration, render_plan, render_report, render_status
from runbook.plan import Plan, PlannedChange, PreflightProblem
from runbook.status import (
    Approval,
    Escalation,
    GateRecord,
    PhaseRecord,
    PhaseSummary,
    RemediationReport,
    RollbackEntry,
    RunState,
    RunStatus,
    StepRecord,
    StepStatus,
)

NOW = datetime(2026, 1, 2, 3, 0, 0, tzinfo=timezone.utc)


def text(renderable) -> str:
    console = Console(width=200, record=True, force_terminal=False)
    console.print(renderable)
    return console.export_text()


def test_durations_and_countdowns():
    assert fmt_duration(None) == "-"
    assert fmt_duration(4.25) == "4.2s"
    assert fmt_duration(75) == "1m15s"
    assert fmt_duration(3 * 3600 + 61) == "3h01m01s"
    assert countdown(NOW + timedelta(minutes=4, seconds=12), NOW) == "in 4m12s"
    assert countdown(NOW - timedelta(seconds=30), NOW) == "overdue by 30s"
    assert countdown(None, NOW) == "-"


def _status() -> RunStatus:
    gate = GateRecord(id="phase-2", title="Start phase 2", status="OPEN", opened_at=NOW,
                      min_approvals=2, approvers_allowed=["alice", "bob"],
                      approvals=[Approval(gate="phase-2", approver="alice", at=NOW, comment="lgtm")],
                      remind_at=NOW + timedelta(minutes=10), escalate_at=NOW + timedelta(minutes=25),
                      timeout_at=NOW + timedelta(hours=2))
    return RunStatus(
        incident_id="1278", requested_by="carol", state=RunState.AWAITING_APPROVAL, current_phase=1,
        pending_gate=gate, started_at=NOW - timedelta(minutes=5),
        phases=[PhaseRecord(number=1, title="Infrastructure emergency response", owner="Infra",
                            budget_s=3600, hard_limit_s=7200, escalation=["Lead"], status="RUNNING",
                            started_at=NOW - timedelta(minutes=3),
                            budget_at=NOW + timedelta(minutes=57), hard_limit_at=NOW + timedelta(minutes=117))],
        steps=[StepRecord(id="scale-connector", phase=1, summary="Scale connector", activity="scale_connector",
                          kind="mutate", reversible=False, status=StepStatus.SUCCEEDED, attempts=2,
                          duration_s=18.0),
               StepRecord(id="expand-sql", phase=1, summary="Expand SQL", activity="expand_sql",
                          kind="mutate", reversible=True, status=StepStatus.FAILED, attempts=3,
                          error="operationInProgress")] +
              [StepRecord(id=f"later-{i}", phase=2, summary="later", activity="x", kind="mutate",
                          reversible=True) for i in range(3)],
        escalations=[Escalation(at=NOW, level="reminder", recipient="Infrastructure Team Lead",
                                subject="Gate phase-1 awaits approval")],
        rollback_log=[RollbackEntry(at=NOW, step_id="expand-sql", action="compensated", detail="tier restored")],
    )


def test_status_shows_gate_approvals_countdowns_steps_escalations_rollback():
    out = text(render_status("remediation-1278-abc123", _status(), now=NOW))
    assert "AWAITING_APPROVAL" in out
    assert "Gate phase-2" in out and "1 of 2 required" in out and "alice, bob" in out
    assert "alice" in out and "lgtm" in out
    assert "Reminder in 10m00s" in out and "escalation in 25m00s" in out and "timeout in 2h00m00s" in out
    assert "in 57m00s" in out  # phase budget left
    assert "scale-connector" in out and "18s" in out
    assert "operationInProgress" in out
    assert "3 step(s) not started yet" in out and "later-0" not in out
    assert "Infrastructure Team Lead" in out
    assert "COMPENSATED" in out and "tier restored" in out


def test_breached_budget_is_flagged():
    st = _status()
    st.phases[0].budget_breached = True
    assert "BREACHED" in text(render_status("x", st, now=NOW))


def test_report_rendering():
    r = RemediationReport(incident_id="1278", outcome=RunState.ROLLED_BACK, reason="phase 2 failed",
                          phases=[PhaseSummary(number=1, title="Infra", status="ROLLED_BACK",
                                               budget_s=3600, duration_s=4000, budget_breached=True)],
                          problems=["restore_sql failed"])
    out = text(render_report("wid", r))
    assert "ROLLED_BACK" in out and "phase 2 failed" in out and "restore_sql failed" in out
    assert "1h06m40s" in out


def test_plan_rendering_marks_irreversible_problems_and_digest():
    plan = Plan(changes=[PlannedChange(step_id="scale-connector", resource="staging-connector",
                                       field="maxInstances", current=3, desired=10, reversible=False)],
                problems=[PreflightProblem(field="desired.sql_tier", reason="not offered")],
                warnings=["SQL in maintenance"])
    plan.digest = plan.compute_digest()
    out = text(render_plan(plan))
    assert "NO (irreversible)" in out
    assert "desired.sql_tier: not offered" in out
    assert "SQL in maintenance" in out
    assert plan.digest in out


def _containers(memory: str, pool: str) -> dict:
    return {"template": {"containers": [{
        "image": "us-docker.pkg.dev/netra-staging/netra/backend:2025-09-15",
        "env": [{"name": "ENVIRONMENT", "value": "staging"},
                {"name": "DATABASE_POOL_SIZE", "value": pool}],
        "resources": {"limits": {"cpu": "4", "memory": memory}}}]}}


def test_status_step_details_show_changed_fields_not_whole_resources():
    st = _status()
    st.steps[0].before, st.steps[0].after = _containers("4Gi", "5"), _containers("6Gi", "8")
    st.steps[0].detail = "netra-backend-staging: revision 00004 ready"
    out = text(render_status("x", st, now=NOW))
    assert "revision 00004 ready" in out
    assert "template.containers[0].env.DATABASE_POOL_SIZE: 5 → 8" in out
    assert "template.containers[0].resources.limits.memory: 4Gi → 6Gi" in out
    # Unchanged parts of the template (the image, the other variables) are left out.
    assert "us-docker.pkg.dev" not in out and "ENVIRONMENT" not in out


def test_status_step_details_are_bounded():
    st = _status()
    st.steps[0].before = {f"field{i}": i for i in range(10)}
    st.steps[0].after = {f"field{i}": i + 1 for i in range(10)}
    out = text(render_status("x", st, now=NOW))
    assert "field0: 0 → 1" in out and "and 4 more field(s)" in out and "field9" not in out


def test_report_lists_each_change_field_by_field():
    from runbook.status import ChangeRecord
    r = RemediationReport(incident_id="1278", outcome=RunState.SUCCEEDED, changes_applied=[
        ChangeRecord(step_id="configure-backend", resource="netra-backend-staging",
                     summary="Configure netra-backend-staging", before=_containers("4Gi", "5"),
                     after=_containers("6Gi", "8"))])
    out = text(render_report("wid", r))
    assert "configure-backend: Configure netra-backend-staging" in out
    assert "template.containers[0].resources.limits.memory: 4Gi → 6Gi" in out
    assert "us-docker.pkg.dev" not in out and "'" not in out


def test_plan_values_are_json_like():
    plan = Plan(changes=[PlannedChange(step_id="deploy", resource="svc", field="env.X",
                                       current=None, desired="45", reversible=True),
                         PlannedChange(step_id="route", resource="svc", field="traffic",
                                       current={"svc-00001": 50}, desired={"LATEST": 100},
                                       reversible=True)])
    out = text(render_plan(plan))
    assert "null" in out and "{LATEST: 100}" in out and "None" not in out
