"""The live view of `runbook status --watch` (cli/watch.py): what it shows, and that it fits.

Rendered like a terminal of 80x24 and of 200 columns; no server needed, except the
PendingStep test, which builds a real ``WorkflowExecutionDescription`` from its proto.
"""

from __future__ import annotations

import asyncio
import io
import re
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console
from temporalio.api.common.v1 import ActivityType, Payloads
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflow.v1 import PendingActivityInfo, WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionResponse
from temporalio.client import WorkflowExecutionDescription
from temporalio.contrib.pydantic import pydantic_data_converter

from cli.client import Settings
from cli.actions import StatusView
from cli.watch import PendingStep, render_watch
from cli.watch_live import follow
from cli.watch_parts import pending_steps
from runbook.activity_io import MutationCheckpoint
from runbook.leases import LeaseHolderInfo, LeaseView
from runbook.plan import DriftRow
from runbook.status import (
    Approval,
    Escalation,
    FailureDecision,
    GateRecord,
    PauseRecord,
    PhaseRecord,
    RollbackEntry,
    RunState,
    RunStatus,
    StepRecord,
    StepStatus,
)

NOW = datetime(2026, 1, 2, 3, 0, 0, tzinfo=timezone.utc)
WID = "remediation-1278-ab12cd"
TITLES = ["Infrastructure emergency response", "Application configuration fixes",
          "Load balancer and backend hardening", "Verification and soak"]
LONG_ERROR = ("googleapiclient.errors.HttpError: <HttpError 409 when requesting "
              "https://sqladmin.googleapis.com/v1/projects/acme-prod/instances/orders-db?alt=json "
              "returned \"Operation failed because another operation was already in progress.\" "
              "Details: operationInProgress; retry after the pending maintenance completes "
              "(operation 3f9c2a71-77b4-4c1e-bb0e-0123456789ab)") * 2


def screen(renderable, width: int, height: int = 24) -> list[str]:
    console = Console(width=width, height=height, record=True, force_terminal=False,
                      file=io.StringIO())
    console.print(renderable)
    return console.export_text().rstrip("\n").split("\n")


def view(st: RunStatus, pending: list[PendingStep] = (), width: int = 80, height: int = 24) -> list[str]:
    lines = screen(render_watch(WID, st, list(pending), NOW, width, height), width, height)
    assert all(len(row) <= width for row in lines), [r for r in lines if len(r) > width]
    return lines


def ago(**kw) -> datetime:
    return NOW - timedelta(**kw)


def phases(current: int) -> list[PhaseRecord]:
    out = []
    for n, title in enumerate(TITLES, start=1):
        status = "SUCCEEDED" if n < current else "RUNNING" if n == current else "PENDING"
        out.append(PhaseRecord(
            number=n, title=title, owner=f"Team {n}", budget_s=3600, hard_limit_s=7200,
            escalation=["Lead"], status=status,
            started_at=ago(minutes=10 * (current - n) + 5) if status != "PENDING" else None,
            duration_s=600.0 if status == "SUCCEEDED" else None,
            budget_at=NOW + timedelta(minutes=55) if status == "RUNNING" else None,
            hard_limit_at=NOW + timedelta(minutes=115) if status == "RUNNING" else None))
    return out


def step(sid: str, phase: int, status: StepStatus = StepStatus.SUCCEEDED, kind: str = "mutate",
         **kw) -> StepRecord:
    done = status not in (StepStatus.PENDING, StepStatus.RUNNING)
    return StepRecord(id=sid, phase=phase, summary=f"Do {sid}", activity=sid.replace("-", "_"),
                      kind=kind, reversible=True, status=status,
                      attempts=kw.pop("attempts", 1 if status != StepStatus.PENDING else 0),
                      started_at=kw.pop("started_at", ago(minutes=3) if status != StepStatus.PENDING else None),
                      duration_s=kw.pop("duration_s", 12.0 if done else None), **kw)


def twelve_finished() -> list[StepRecord]:
    """Phases 1-3 done: 12 finished steps (one skipped by an operator after failing)."""
    ids = [["scale-connector", "expand-sql-tier", "raise-max-connections", "enable-sql-insights"],
           ["set-startup-probe", "set-min-instances", "rotate-db-secret", "pin-traffic-split"],
           ["configure-backend-timeout", "enable-outlier-detection", "renew-ssl-certificate",
            "tune-redis-maxmemory"]]
    steps = [step(sid, n + 1) for n, row in enumerate(ids) for sid in row]
    steps[7] = step("pin-traffic-split", 2, StepStatus.SKIPPED, error="revision not ready",
                    detail="skipped by alice after failing")
    return steps


def base(state: RunState, current: int, steps: list[StepRecord], **kw) -> RunStatus:
    return RunStatus(incident_id="1278", requested_by="carol", state=state, current_phase=current,
                     started_at=ago(minutes=42), phases=phases(current), steps=steps, **kw)


def soak_at_40_percent() -> RunStatus:
    st = base(RunState.RUNNING, 4, twelve_finished() + [
        step("verify-health", 4), step("soak", 4, StepStatus.RUNNING, kind="soak", started_at=ago(minutes=8))])
    p4 = st.phases[3]
    p4.soak_window_s, p4.soak_clean_since, p4.soak_samples, p4.soak_restarts = 900, ago(seconds=360), 3, 1
    return st


SOAK_SAMPLE = PendingStep(step_id="17", attempt=1, maximum_attempts=5, activity_type="soak")


def approval_gate() -> RunStatus:
    gate = GateRecord(id="phase-2", title="Start phase 2", status="OPEN", kind="approval", phase=2,
                      two_person_rule=True, opened_at=ago(minutes=12), min_approvals=2,
                      approvers_allowed=["alice", "bob", "dave"],
                      approvals=[Approval(gate="phase-2", approver="alice", at=ago(minutes=2))],
                      remind_at=ago(minutes=2), escalate_at=NOW + timedelta(minutes=13),
                      timeout_at=NOW + timedelta(minutes=108),
                      drift=[DriftRow(step_id="set-min-instances", resource="run/orders-api",
                                      field="min_instances", planned_from=1, now=3)])
    steps = [step(s, 1) for s in ("scale-connector", "expand-sql-tier", "raise-max-connections")]
    st = base(RunState.AWAITING_APPROVAL, 1, steps, pending_gate=gate, gates=[gate])
    st.escalations = [Escalation(at=ago(minutes=2, seconds=5), level="reminder", recipient="Platform Lead",
                                 subject="Gate phase-2 awaits approval", gate="phase-2", delivered=["email"])]
    return st


def decision_gate() -> RunStatus:
    gate = GateRecord(id="decide-set-startup-probe", title="Decide: set-startup-probe failed",
                      status="OPEN", kind="decision", phase=2, opened_at=ago(minutes=2),
                      step_id="set-startup-probe", failure=LONG_ERROR, attempts=5,
                      options=["retry", "skip", "rollback"],
                      in_force=["scale-connector", "expand-sql-tier"],
                      remind_at=NOW + timedelta(minutes=3), escalate_at=NOW + timedelta(minutes=8),
                      timeout_at=NOW + timedelta(minutes=28))
    steps = [step("scale-connector", 1), step("expand-sql-tier", 1),
             step("set-startup-probe", 2, StepStatus.FAILED, attempts=5, error=LONG_ERROR),
             step("set-min-instances", 2, StepStatus.PENDING)]
    return base(RunState.AWAITING_APPROVAL, 2, steps, pending_gate=gate, gates=[gate])


def in_flight_attempt_3() -> tuple[RunStatus, list[PendingStep]]:
    st = base(RunState.RUNNING, 1, [step("scale-connector", 1),
                                    step("expand-sql-tier", 1, StepStatus.RUNNING, attempts=3),
                                    step("raise-max-connections", 1, StepStatus.PENDING)])
    return st, [PendingStep(step_id="expand-sql-tier", attempt=3, maximum_attempts=6,
                            operation="operation-1767322800-5f1a2b", last_failure=LONG_ERROR,
                            activity_type="expand_sql_tier")]


def paused() -> RunStatus:
    st = base(RunState.PAUSED, 3, twelve_finished()[:8] + [step("configure-backend-timeout", 3, StepStatus.PENDING)])
    st.pause = PauseRecord(by="alice", reason="checking the LB logs first", requested_at=ago(minutes=4),
                           held_at=ago(minutes=3), held_before="step configure-backend-timeout")
    return st


def rolling_back() -> RunStatus:
    steps = twelve_finished()[:6]
    steps[5] = step("set-min-instances", 2, StepStatus.FAILED, error=LONG_ERROR)
    st = base(RunState.ROLLING_BACK, 2, steps)
    st.rollback_log = [RollbackEntry(at=ago(seconds=20), step_id="set-startup-probe", action="compensated",
                                     detail="probe restored to /healthz 240s")]
    return st


ALL = {"soak": lambda: (soak_at_40_percent(), [SOAK_SAMPLE]), "approval": lambda: (approval_gate(), []),
       "decision": lambda: (decision_gate(), []), "in_flight": in_flight_attempt_3,
       "paused": lambda: (paused(), []), "rolling_back": lambda: (rolling_back(), [])}


def whole_on_a_line(lines: list[str], token: str) -> bool:
    return any(re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", row) for row in lines)


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("width", [80, 200])
def test_every_state_fits_and_keeps_tokens_whole(name, width):
    st, pending = ALL[name]()
    lines = view(st, pending, width=width)
    if width == 80:
        assert len(lines) <= 24
    assert whole_on_a_line(lines, WID)
    for s in st.steps:
        if s.status == StepStatus.RUNNING or s.phase == st.current_phase:
            assert whole_on_a_line(lines, s.id), s.id
    # A cut value ends with an ellipsis, never in a token folded onto the next line.
    for row, below in zip(lines, lines[1:]):
        assert not (row.rstrip() and row.rstrip()[-1].isalnum() and len(row.rstrip()) == width
                    and below[:1].isalnum()), (row, below)


def test_soak_shows_progress_samples_and_restarts():
    st, pending = ALL["soak"]()
    for width in (80, 200):
        lines = view(st, pending, width=width)
        assert any(row.startswith("▶ soak · 8m00s · attempt 1/5") for row in lines)
        bar_row = next(row for row in lines if "clean" in row)
        assert "360/900s clean (40%)" in bar_row and "3 sample(s)" in bar_row and "1 restart(s)" in bar_row
        bar = re.search(r"[█░]+", bar_row).group()
        assert round(bar.count("█") / len(bar), 1) == 0.4
    # Finished phases collapse to counts; the 12 finished steps are not listed one by one.
    lines = view(st, pending)
    assert any("Infrastructure" in row and "4 succeeded" in row for row in lines)
    assert any("Application" in row and "3 succeeded, 1 skipped" in row for row in lines)
    assert not whole_on_a_line(lines, "tune-redis-maxmemory")
    assert any(row.startswith("phase 4 steps: ✓ verify-health 12s  ▶ soak") for row in lines)


def test_approval_gate_says_sent_who_may_approve_and_drift():
    lines = view(approval_gate())
    gate = "\n".join(lines)
    assert "approvals 1/2 (alice)" in gate
    assert "may approve: alice, bob, dave · quorum 2 · not carol (two-person rule)" in gate
    assert "remind sent 02:57:55 · escalate in 13m00s · timeout in 1h48m" in gate
    assert "drift set-min-instances: run/orders-api min_instances 1 → 3 (remaining)" in gate
    anyone = approval_gate()
    anyone.pending_gate.approvers_allowed, anyone.pending_gate.two_person_rule = [], False
    assert "may approve: anyone · quorum 2" in "\n".join(view(anyone))
    assert "two-person" not in "\n".join(view(anyone))


def test_decision_gate_shows_failure_options_in_force_and_timeout():
    for width in (80, 200):
        lines = view(decision_gate(), width=width)
        text = "\n".join(lines)
        assert "decide-set-startup-probe · step set-startup-probe failed after 5 attempt(s)" in text
        error = next(row for row in lines if "error: googleapiclient" in row)
        assert error.rstrip().rstrip("│ ").endswith("…")  # shortened, on one line
        assert "options: retry | skip | rollback · 2 change(s) in force" in text
        assert "timeout in 28m00s → rollback" in text
    decided = decision_gate()
    decided.pending_gate.decision = FailureDecision(decision="retry", by="bob", at=NOW)
    assert view(decided)  # still renders while the decision is being applied


def test_paused_says_who_why_and_what_it_holds_before():
    assert any(row.startswith("PAUSED by alice 3m00s ago · held before step configure-backend-timeout: ")
               for row in view(paused()))  # the reason follows, cut at 80 columns
    assert "held before step configure-backend-timeout: checking the LB logs first" in \
           "\n".join(view(paused(), width=200))
    pausing = paused()
    pausing.state = RunState.RUNNING
    pausing.steps[-1] = step("configure-backend-timeout", 3, StepStatus.RUNNING)
    pausing.pause.held_at = pausing.pause.held_before = None
    text = "\n".join(view(pausing))
    assert "pausing after configure-backend-timeout · asked by alice 4m00s ago" in text


def test_step_in_flight_shows_attempt_operation_and_last_failure():
    st, pending = in_flight_attempt_3()
    lines = view(st, pending)
    flight = next(row for row in lines if row.startswith("▶ expand-sql-tier"))
    assert "3m00s · attempt 3/6 · op operation-1767322800-5f1a2b" in flight
    failure = next(row for row in lines if row.startswith("  last failure: googleapiclient"))
    assert failure.endswith("…") and len(failure) == 80
    assert "op operation-1767322800-5f1a2b · Do expand-sql-tier" in "\n".join(view(st, pending, width=200))
    # Without the description the attempt still shows, from the status.
    assert any("▶ expand-sql-tier · 3m00s · attempt 3" in row for row in view(st, []))


def test_rollback_and_failures_are_listed_last():
    lines = view(rolling_back(), [PendingStep("undo-rotate-db-secret", 2, 10, None, "quota", "x")])
    text = "\n".join(lines)
    assert "▶ undo-rotate-db-secret · attempt 2/10 · last failure: quota" in text
    assert "set-startup-probe COMPENSATED: probe restored" in text
    assert "✗ set-min-instances FAILED: googleapiclient" in text


def test_short_terminal_drops_history_and_phases_never_the_step_or_gate():
    st, pending = in_flight_attempt_3()
    st.pending_gate = decision_gate().pending_gate
    st.escalations = approval_gate().escalations
    for height in (24, 14, 10):
        lines = view(st, pending, height=height)
        assert len(lines) <= height
        assert any(row.startswith("▶ expand-sql-tier") for row in lines)
        assert any("decide-set-startup-probe" in row for row in lines)
    # History goes first, then the current phase's steps, then the phases.
    short = "\n".join(view(st, pending, height=14))
    assert "○ 4 Verification" in short and "phase 1 steps" not in short and "reminder" not in short
    shortest = "\n".join(view(st, pending, height=10))
    assert "Verification" not in shortest and "last failure" in shortest
    tall = "\n".join(view(st, pending, height=40))
    assert "phase 1 steps" in tall and "reminder → Platform Lead" in tall


def test_queued_run_and_a_run_with_nothing_yet():
    st = RunStatus(incident_id="1278", requested_by="", state=RunState.WAITING_FOR_LEASE,
                   started_at=ago(seconds=30),
                   lease=LeaseView(keeper_id="remediation-leases-acme", state="queued", position=2,
                                   holders=[LeaseHolderInfo(workflow_id="remediation-1277-ffee00",
                                                            incident_id="1277", since=ago(minutes=9))]))
    lines = view(st)
    assert lines[1] == "WAITING_FOR_LEASE · no phase yet · 30s elapsed"
    assert lines[2].startswith("lease: QUEUED at position 2 behind remediation-1277-ffee00")
    assert len(lines) == 3


def test_a_finished_run_shows_its_outcome_not_its_gate():
    st = approval_gate()
    st.state, st.finished_at, st.outcome_reason = RunState.REJECTED, NOW, "rejected by bob at phase-2"
    text = "\n".join(view(st))
    assert "REJECTED · phase 1 Infrastructure emergency response · 42m00s elapsed" in text
    assert "Waiting for approval" not in text


def _description(*activities: PendingActivityInfo, status: int = 0) -> WorkflowExecutionDescription:
    raw = DescribeWorkflowExecutionResponse(workflow_execution_info=WorkflowExecutionInfo(status=status),
                                            pending_activities=list(activities))
    return WorkflowExecutionDescription._from_raw_info(
        raw.workflow_execution_info, namespace="default", converter=pydantic_data_converter,
        raw_description=raw)


def test_pending_steps_from_a_description():
    checkpoint = MutationCheckpoint(resource="sql/orders-db", before={"tier": "db-custom-2-7680"},
                                    operation="operation-42", sent=True)
    details = Payloads(payloads=pydantic_data_converter.payload_converter.to_payloads(
        [checkpoint.model_dump(mode="json", exclude={"failed", "failed_operations", "operation_done"})]))
    junk = Payloads(payloads=pydantic_data_converter.payload_converter.to_payloads(["just a string"]))
    undecodable = Payloads(payloads=pydantic_data_converter.payload_converter.to_payloads([{"a": 1}]))
    undecodable.payloads[0].metadata["encoding"] = b"binary/encrypted"
    desc = _description(
        PendingActivityInfo(activity_id="expand-sql-tier", activity_type=ActivityType(name="expand_sql_tier"),
                            attempt=3, maximum_attempts=6, heartbeat_details=details,
                            last_failure=Failure(message="operationInProgress")),
        PendingActivityInfo(activity_id="17", activity_type=ActivityType(name="sample_error_rate"),
                            attempt=1, maximum_attempts=0, heartbeat_details=junk),
        PendingActivityInfo(activity_id="undo-x", attempt=2, heartbeat_details=undecodable),
        PendingActivityInfo(activity_id="bare", attempt=1))
    assert pending_steps(desc) == [
        PendingStep("expand-sql-tier", 3, 6, "operation-42", "operationInProgress", "expand_sql_tier"),
        PendingStep("17", 1, 0, None, None, "sample_error_rate"),
        PendingStep("undo-x", 2, 0, None, None, ""),
        PendingStep("bare", 1, 0, None, None, "")]
    assert pending_steps(desc)[1].attempts_text == "attempt 1/∞"


def test_watch_command_renders_the_live_view_until_the_run_ends():
    st, _ = in_flight_attempt_3()
    details = Payloads(payloads=pydantic_data_converter.payload_converter.to_payloads(
        [{"resource": "sql/orders-db", "before": {}, "operation": "operation-77"}]))
    running = _description(PendingActivityInfo(activity_id="expand-sql-tier", attempt=3, maximum_attempts=6,
                                               heartbeat_details=details),
                           status=WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING)
    done = st.model_copy(update={"state": RunState.SUCCEEDED, "finished_at": NOW})
    views = iter([StatusView(description=running, status=st), StatusView(description=running, status=done)])

    async def connect(settings):
        return None

    async def get_status(settings, wid, client=None):
        return next(views)

    terminal = Console(width=80, height=24, record=True, force_terminal=True, file=io.StringIO())
    assert asyncio.run(follow(Settings(), WID, 0, terminal, connect_to=connect,
                              get_status=get_status)) == RunState.SUCCEEDED
    shown = terminal.export_text()
    assert "attempt 3/6 · op operation-77" in shown and "SUCCEEDED · phase 1" in shown
