"""Rich renderings of a plan, a live RunStatus and a final RemediationReport."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cli.diffs import format_value, render_diff_lines
from runbook.identity_policy import CLAIMED_NOTE, describe_identity
from runbook.leases import LeaseView
from runbook.plan import Plan
from runbook.status import (
    Approval,
    TERMINAL_STATES,
    Escalation,
    GateRecord,
    RemediationReport,
    RunState,
    RunStatus,
    StepRecord,
)
from runbook.value_text import shorten

STATE_STYLE = {
    RunState.SUCCEEDED: "bold green", RunState.RUNNING: "bold cyan", RunState.VALIDATING: "bold cyan",
    RunState.AWAITING_APPROVAL: "bold yellow", RunState.PLANNING: "cyan",
    RunState.AWAITING_DECISION: "bold yellow",
    RunState.WAITING_FOR_LEASE: "bold yellow", RunState.PAUSED: "bold yellow",
    RunState.ROLLING_BACK: "bold magenta", RunState.ROLLED_BACK: "bold magenta",
}
# A step's changed fields shown in the status table; the report and the audit show all.
STEP_DIFF_LINES = 6
STATUS_STYLE = {"SUCCEEDED": "green", "APPROVED": "green", "RUNNING": "cyan", "OPEN": "yellow",
                "FAILED": "red", "REJECTED": "red", "TIMED_OUT": "red", "COMPENSATED": "magenta",
                "COMPENSATION_FAILED": "bold red", "LEFT_IN_PLACE": "yellow",
                "ROLLED_BACK": "magenta", "SKIPPED": "dim", "PENDING": "dim"}


def utc(dt: datetime) -> datetime:
    """A datetime from history or JSON, made timezone-aware (naive means UTC)."""
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def fmt_time(dt: datetime | None) -> str:
    return utc(dt).strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "-"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(abs(seconds)))
    h, rem = divmod(s, 3600)
    mnt, sec = divmod(rem, 60)
    if h:
        return f"{h}h{mnt:02d}m{sec:02d}s"
    if mnt:
        return f"{mnt}m{sec:02d}s"
    return f"{abs(seconds):.1f}s" if abs(seconds) < 10 else f"{sec}s"


def countdown(at: datetime | None, now: datetime,
              duration: Callable[[float], str] | None = None) -> str:
    """'in 4m12s' before the moment, 'overdue by 30s' after it (``duration`` formats)."""
    if at is None:
        return "-"
    delta = (utc(at) - now).total_seconds()
    text = (duration or fmt_duration)(delta)
    return f"in {text}" if delta >= 0 else f"overdue by {text}"


def _styled(value: str) -> Text:
    return Text(value, style=STATUS_STYLE.get(value, ""))


def _short(text: str, width: int = 60) -> str:
    return shorten(text, width)


# --- plan -----------------------------------------------------------------------------


def render_plan(plan: Plan) -> RenderableType:
    table = Table(title="Planned changes (current → desired)", expand=False)
    for col in ("step", "resource", "field", "current", "desired", "reversible"):
        table.add_column(col, overflow="fold")
    for c in plan.changes:
        table.add_row(c.step_id, c.resource, c.field, format_value(c.current), format_value(c.desired),
                      Text("yes", "green") if c.reversible else Text("NO (irreversible)", "bold red"))
    parts: list[RenderableType] = [table if plan.changes else Text("No changes needed.", "green")]
    if plan.not_applicable:
        parts.append(Text(f"\nNot applicable on this topology ({len(plan.not_applicable)}): "
                          "shown, not attempted", "bold cyan"))
        parts += [Text(f"  – {n.step_id}: {n.reason}", "cyan") for n in plan.not_applicable]
    if plan.problems:
        parts.append(Text(f"\nPreflight problems ({len(plan.problems)}): the run would stop "
                          "before changing anything", "bold red"))
        parts += [Text(f"  ✗ {p.field}: {p.reason}", "red") for p in plan.problems]
    else:
        parts.append(Text("\nPreflight: no problems", "green"))
    if plan.warnings:
        parts.append(Text(f"Warnings ({len(plan.warnings)}):", "bold yellow"))
        parts += [Text(f"  ! {w}", "yellow") for w in plan.warnings]
    parts.append(Text(f"Plan digest: {plan.digest}  (approve with --digest {plan.digest} to "
                      "pin your approval to exactly this plan)"))
    return Group(*parts)


# --- status ---------------------------------------------------------------------------


def approver_proof(a: Approval) -> str:
    """How the approver's identity is known: proven by whom, or only claimed."""
    if a.identity == "verified":
        return f"verified by {a.idp} ({a.channel})"
    return CLAIMED_NOTE


def _gate_panel(g: GateRecord, now: datetime) -> Panel:
    lines = [Text.assemble(("Gate ", ""), (g.id, "bold"), f": {g.title}  ", _styled(g.status))]
    lines.append(Text(f"Approvals: {len(g.approvals)} of {g.min_approvals} required"
                      + (f"; allowed approvers: {', '.join(g.approvers_allowed)}"
                         if g.approvers_allowed else "; any approver except the requester"
                         if g.two_person_rule else "; any approver")
                      + (f" ({g.quorum_note})" if g.quorum_note else "")))
    for a in g.approvals:
        lines.append(Text(f"  ✓ {a.approver} at {fmt_time(a.at)} via {a.via}, {approver_proof(a)}"
                          + (f": {a.comment}" if a.comment else ""), "green"))
    lines.append(Text(f"Reminder {countdown(g.remind_at, now)} · escalation "
                      f"{countdown(g.escalate_at, now)} · timeout {countdown(g.timeout_at, now)}"))
    return Panel(Group(*lines), title="Waiting for approval", border_style="yellow")


def _phases_table(st: RunStatus, now: datetime) -> Table:
    t = Table(title="Phases")
    for col in ("#", "phase", "owner", "status", "budget", "time used", "budget left", "hard limit"):
        t.add_column(col)
    for p in st.phases:
        if p.duration_s is not None:
            used = p.duration_s
        elif p.started_at:
            used = (now - utc(p.started_at)).total_seconds()
        else:
            used = None
        if p.budget_breached:
            left = Text("BREACHED", "bold red")
        elif p.status == "RUNNING":
            left = Text(countdown(p.budget_at, now))
        else:
            left = Text("-")
        hard = countdown(p.hard_limit_at, now) if p.status == "RUNNING" else fmt_duration(p.hard_limit_s)
        t.add_row(str(p.number), p.title, p.owner, _styled(p.status), fmt_duration(p.budget_s),
                  fmt_duration(used), left, hard)
    return t


def _steps_table(st: RunStatus) -> Table:
    # Steps not started yet are the plan, already summarised above: count them only.
    pending = [s for s in st.steps if s.status.value == "PENDING"]
    t = Table(title="Steps", caption=f"{len(pending)} step(s) not started yet" if pending else None)
    t.add_column("phase")
    t.add_column("step", no_wrap=True)
    for col in ("summary", "status", "attempts", "duration", "detail"):
        t.add_column(col, overflow="fold")
    for s in st.steps:
        if s.status.value == "PENDING":
            continue
        t.add_row(str(s.phase) if s.phase else "cleanup", s.id, s.summary, _styled(s.status.value),
                  str(s.attempts or ("?" if s.started_at else 0)), fmt_duration(s.duration_s),
                  _step_detail(s))
    return t


def _step_detail(s: StepRecord) -> str:
    """The step's detail or error, then the fields its change touched (not whole resources)."""
    lines = [_short(s.error or s.detail, 80)] if (s.error or s.detail) else []
    lines += render_diff_lines(s.before, s.after, width=40, limit=STEP_DIFF_LINES)
    return "\n".join(lines)


def render_status(workflow_id: str, st: RunStatus, now: datetime | None = None) -> RenderableType:
    now = now or datetime.now(timezone.utc)
    head = Table.grid(padding=(0, 2))
    head.add_row("Run", workflow_id)
    head.add_row("Incident", f"{st.incident_id} (requested by {st.requested_by or 'unknown'})")
    head.add_row("Identity", Text(describe_identity(st.identity, st.requested_by),
                                  "green" if st.identity and st.identity.mode == "verified" else "yellow"))
    head.add_row("State", Text(st.state.value, STATE_STYLE.get(st.state, "bold red")))
    head.add_row("Phase", str(st.current_phase) if st.current_phase else "-")
    elapsed = ((utc(st.finished_at) if st.finished_at else now) - utc(st.started_at)).total_seconds() \
        if st.started_at else None
    head.add_row("Started", f"{fmt_time(st.started_at)} ({fmt_duration(elapsed)} elapsed)")
    if st.finished_at:
        head.add_row("Finished", fmt_time(st.finished_at))
    if st.outcome_reason:
        head.add_row("Reason", st.outcome_reason)
    if st.plan is not None:
        head.add_row("Plan", f"{len(st.plan.changes)} changes, {len(st.plan.problems)} problems, "
                             f"digest {st.plan.digest}")
    if st.lease is not None:
        head.add_row("Target lease", lease_line(st.lease))
    parts: list[RenderableType] = [Panel(head, title="Remediation run")]
    if st.pending_gate is not None and st.state not in TERMINAL_STATES:
        parts.append(_gate_panel(st.pending_gate, now))
    if st.phases:
        parts.append(_phases_table(st, now))
    if st.steps:
        parts.append(_steps_table(st))
    decided = [g for g in st.gates if g.status not in ("PENDING", "OPEN")]
    if decided:
        t = Table(title="Gates")
        for col in ("gate", "status", "approvals", "closed"):
            t.add_column(col, overflow="fold")
        for g in decided:
            who = ", ".join(a.approver for a in g.approvals) or (
                f"rejected by {g.rejected_by}: {g.reject_reason}" if g.rejected_by else "-")
            t.add_row(g.id, _styled(g.status), who, fmt_time(g.closed_at))
        parts.append(t)
    if st.escalations:
        parts.append(escalations_table(st.escalations))
    if st.rollback_log:
        t = Table(title="Rollback log")
        for col in ("at", "step", "action", "detail"):
            t.add_column(col, overflow="fold")
        for r in st.rollback_log:
            t.add_row(fmt_time(r.at), r.step_id, _styled(r.action.upper()), r.detail)
        parts.append(t)
    if st.ignored_messages:
        parts.append(Text("Ignored messages:", "yellow"))
        parts += [Text(f"  {i.signal} at {fmt_time(i.at)}: {i.reason}", "yellow")
                  for i in st.ignored_messages]
    return Group(*parts)


def render_report(workflow_id: str, r: RemediationReport) -> RenderableType:
    head = Table.grid(padding=(0, 2))
    head.add_row("Run", workflow_id)
    head.add_row("Incident", r.incident_id)
    head.add_row("Outcome", Text(r.outcome.value, STATE_STYLE.get(r.outcome, "bold red")))
    if r.reason:
        head.add_row("Reason", r.reason)
    head.add_row("Started", fmt_time(r.started_at))
    head.add_row("Finished", fmt_time(r.finished_at))
    head.add_row("Plan digest", r.plan_digest or "-")
    parts: list[RenderableType] = [Panel(head, title="Remediation report")]
    if r.phases:
        t = Table(title="Phases: budget vs actual")
        for col in ("#", "phase", "status", "budget", "actual", "breached"):
            t.add_column(col)
        for p in r.phases:
            t.add_row(str(p.number), p.title, _styled(p.status), fmt_duration(p.budget_s),
                      fmt_duration(p.duration_s), Text("yes", "red") if p.budget_breached else "no")
        parts.append(t)
    if r.approvals:
        parts.append(Text("Approvals: " + "; ".join(f"{a.gate} by {a.approver}" for a in r.approvals)))
    for title, changes in (("Changes applied", r.changes_applied),
                           ("Changes reverted", r.changes_reverted),
                           ("Changes left in place", r.changes_left_in_place),
                           ("Sent, outcome unknown (operation unfinished; its undo ran)",
                            r.changes_outcome_unknown)):
        if changes:
            parts.append(Text(f"{title} ({len(changes)}):", "bold"))
            for c in changes:
                parts.append(Text(f"  {c.step_id}: {c.summary}"))
                parts += [Text(f"      {line}", "dim")
                          for line in render_diff_lines(c.before, c.after, width=60)]
    if r.iac_followup:
        parts.append(Text(f"Terraform follow-up ({len(r.iac_followup)}): update these so the next "
                          "apply does not revert the changes in force", "bold yellow"))
        parts += [Text(f"  {f.terraform_resource} \"{f.resource}\": {', '.join(f.attributes)}"
                       + (f" ({f.note})" if f.note else "")) for f in r.iac_followup]
    if any(e.failed for e in r.escalations):
        parts.append(escalations_table([e for e in r.escalations if e.failed]))
    if r.problems:
        parts.append(Text("Problems:", "bold red"))
        parts += [Text(f"  {p}", "red") for p in r.problems]
    return Group(*parts)


def lease_line(lease: LeaseView) -> Text:
    holders = ", ".join(f"{h.workflow_id} (incident {h.incident_id or '?'})" for h in lease.holders)
    if lease.state == "queued":
        return Text(f"QUEUED at position {lease.position} behind {holders or '?'}", "bold yellow")
    if lease.state == "refused":
        return Text(f"REFUSED: held by {holders or '?'}" + (f" ({lease.reason})" if lease.reason else ""),
                    "bold red")
    return Text(f"{lease.state} ({lease.keeper_id})")


def escalations_table(escalations: list[Escalation]) -> Table:
    """Every notification with what each channel did: delivered, still trying, failed."""
    t = Table(title="Escalations and notifications")
    for col in ("at", "level", "to", "subject", "channels"):
        t.add_column(col, overflow="fold")
    for e in escalations:
        cells = [Text(f"{c} delivered ", "green") for c in e.delivered]
        cells += [Text(f"{c} sending… ", "yellow") for c in e.pending]
        cells += [Text(f"{f.channel} FAILED after {f.attempts} attempt(s): {f.error} ", "bold red")
                  for f in e.failed]
        t.add_row(fmt_time(e.at), e.level, e.recipient, e.subject,
                  Text.assemble(*cells) if cells else Text("-"))
    return t
