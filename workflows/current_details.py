"""The markdown the Temporal UI shows as "Current Details" (workflow.set_current_details).

What an operator looking at the run needs to act: the open gate (who may approve, what it
will change, drift since the plan, or for a decision gate the failure and the exact
update to send), the pause and how to resume it. A pure function of the status, called on
every publish: deterministic, cheap, and bounded to about ``MAX_LINES`` lines.
"""

from __future__ import annotations

import json
from datetime import datetime

from runbook.identity_policy import describe_identity
from runbook.plan import DriftRow, PlannedChange
from runbook.status import TERMINAL_STATES, GateRecord, RunState, RunStatus, StepStatus
from runbook.value_text import format_value, shorten

MAX_LINES = 40
GATE_ROWS = 8  # plan rows shown for the open gate, then "and N more"
DRIFT_ROWS = 5
VALUE_WIDTH = 40
CLEANUP_GATE = "cleanup-revisions"
OPTION_MEANING = {"retry": "run the step again",
                  "skip": "leave it undone and go on (reason required)",
                  "rollback": "undo every change in force"}


def _at(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%SZ") if t else "-"


def _payload(**fields: str) -> str:
    return "`" + json.dumps(fields) + "`"


def _target(resource: str, field: str) -> str:
    # Full resource paths end in the name people know the resource by.
    name = resource.rsplit("/", 1)[-1] if resource.startswith("projects/") else resource
    return f"`{name} {field}`"


def _change_row(c: PlannedChange) -> str:
    row = (f"  - {_target(c.resource, c.field)}: {format_value(c.current, VALUE_WIDTH)} → "
           f"{format_value(c.desired, VALUE_WIDTH)}")
    return row if c.reversible else row + " (irreversible)"


def _drift_row(d: DriftRow) -> str:
    row = (f"  - {_target(d.resource, d.field)}: planned from "
           f"{format_value(d.planned_from, VALUE_WIDTH)}, now {format_value(d.now, VALUE_WIDTH)}")
    return row + " (a finished phase's change is no longer in force)" if d.kind == "reverted" else row


def _bounded(rows: list[str], limit: int) -> list[str]:
    return rows if len(rows) <= limit else rows[:limit] + [f"  - and {len(rows) - limit} more"]


def _who(g: GateRecord, s: RunStatus, verb: str) -> str:
    who = ", ".join(g.approvers_allowed) if g.approvers_allowed else "anyone"
    parts = [f"- May {verb}: {who}"]
    if g.quorum_note:  # replaces the two-person rule: no verified requester to exclude
        parts.append(g.quorum_note)
    elif g.min_approvals > 1:
        parts.append(f"{g.min_approvals} distinct approvers")
    if g.two_person_rule and s.requested_by:
        parts.append(f"not {s.requested_by} (two-person rule"
                     + ("; rollback always allowed)" if g.kind == "decision" else ")"))
    return "; ".join(parts)


def _deadlines(g: GateRecord, at_timeout: str) -> str:
    return (f"- Remind {_at(g.remind_at)}, escalate {_at(g.escalate_at)}, "
            f"{at_timeout} {_at(g.timeout_at)}")


def _approval_gate(g: GateRecord, s: RunStatus) -> list[str]:
    lines = [f"- Gate **{g.id}** ({g.title}): {len(g.approvals)} of {g.min_approvals} "
             "approval(s)",
             _deadlines(g, "times out"),
             _who(g, s, "approve")]
    if g.approvals:
        lines.append("- Approved so far: " + ", ".join(
            a.approver + (f" (verified, {a.idp})" if a.identity == "verified" else " (claimed)")
            for a in g.approvals))
    if g.phase == 0 or g.id == CLEANUP_GATE:
        lines.append("- **IRREVERSIBLE**: cleanup deletes the old revisions; they cannot be "
                     "restored or rolled back to")
    if s.plan is not None and g.phase is not None:
        rows = [_change_row(c) for c in gate_changes(s, g)]
        if rows:
            lines.append(f"- Will change ({len(rows)}):")
            lines += _bounded(rows, GATE_ROWS)
    if g.drift:
        was = f", was `{s.plan.rebuilt_from}`" if s.plan and s.plan.rebuilt_from else ""
        digest = f" `{s.plan.digest}`{was}" if s.plan else ""
        lines.append(f"- **Targets drifted** since the plan: re-approve with the new "
                     f"digest{digest}")
        lines += _bounded([_drift_row(d) for d in g.drift], DRIFT_ROWS)
    if g.drift_check_error:
        lines.append(f"- Drift check could not run (plan kept): {shorten(g.drift_check_error, 160)}")
    if verified(s):
        digest = f" --digest {s.plan.digest}" if s.plan else ""
        lines.append(f"- Approve: `runbook approve <run> --gate {g.id}{digest}` after "
                     "`runbook login` (through the approval service), or the Slack buttons; "
                     "unsigned updates and signals are refused")
        return lines
    fields = {"gate": g.id, "approver": "<you>"}
    if s.plan is not None:
        fields["plan_digest"] = s.plan.digest
    lines.append(f"- Approve: update `approve_gate` or signal `approve` with {_payload(**fields)}")
    return lines


def verified(s: RunStatus) -> bool:
    return s.identity is not None and s.identity.mode == "verified"


def gate_changes(s: RunStatus, g: GateRecord) -> list[PlannedChange]:
    """The plan rows a gate releases (its phase's steps)."""
    if s.plan is None or g.phase is None:
        return []
    phase_of = {st.id: st.phase for st in s.steps}
    return [c for c in s.plan.changes if phase_of.get(c.step_id) == g.phase]


def _decision_gate(g: GateRecord, s: RunStatus) -> list[str]:
    lines = [f"- **Step `{g.step_id}` FAILED** after {g.attempts or '?'} attempt(s): gate "
             f"**{g.id}** waits for a decision",
             _deadlines(g, "rolls back at"),
             f"- Error: {shorten(g.failure or 'unknown', 200)}",
             f"- In force: {', '.join(g.in_force) if g.in_force else 'no change yet'}",
             _who(g, s, "decide"),
             "- Decide: update or signal `decide_failure` with one of:"]
    if verified(s):
        lines[-1] = "- Decide (after `runbook login`, through the approval service), one of:"
        lines += [f"  - **{o}**, {OPTION_MEANING.get(o, o)}: `runbook decide <run> --gate {g.id} "
                  f"--decision {o} --reason ...`" for o in g.options]
        return lines
    lines += [f"  - **{o}**, {OPTION_MEANING.get(o, o)}: "
              f"{_payload(gate=g.id, decision=o, by='<you>', reason='...')}" for o in g.options]
    return lines


def _pause(s: RunStatus) -> list[str]:
    p = s.pause
    why = p.reason or "no reason given"
    if p.held_at is None:
        running = [st.id for st in s.steps if st.status == StepStatus.RUNNING]
        after = f" after {', '.join(running)}" if running else " at its next step"
        lines = [f"- **PAUSING**{after}: requested by {p.by} at {_at(p.requested_at)}: {why}"]
    else:
        where = f"; holding before {p.held_before}" if p.held_before else ""
        lines = [f"- **PAUSED** by {p.by} since {_at(p.held_at)}: {why}{where}"]
    lines.append("- Deadlines are frozen while it holds" if p.freeze_deadlines
                 else "- Budgets and gate deadlines keep running while paused")
    lines.append("- Resume: `runbook resume <run>` after `runbook login`" if verified(s) else
                 f"- Resume: update or signal `resume` with {_payload(by='<you>', reason='...')}")
    return lines


def render_current_details(s: RunStatus) -> str:
    lines = [f"**Incident {s.incident_id}** - state **{s.state.value}**",
             f"- Identity: {describe_identity(s.identity, s.requested_by)}"]
    if s.current_phase:
        ph = s.phases[s.current_phase - 1]
        lines.append(f"- Phase {ph.number}: {ph.title} ({ph.owner}), {ph.status}; "
                     f"budget at {_at(ph.budget_at)}, hard limit at {_at(ph.hard_limit_at)}")
    if s.pause is not None:
        lines += _pause(s)
    elif s.state not in TERMINAL_STATES and s.state != RunState.ROLLING_BACK:
        lines.append("- Pause (holds before the next step): " + (
            "`runbook pause <run>` after `runbook login`" if verified(s) else
            f"update or signal `pause` with {_payload(by='<you>', reason='...')}"))
    if s.pending_gate:
        g = s.pending_gate
        lines += _decision_gate(g, s) if g.kind == "decision" else _approval_gate(g, s)
    if s.lease is not None and s.lease.state in ("queued", "refused"):
        holders = ", ".join(f"`{h.workflow_id}`" for h in s.lease.holders) or "another run"
        where = f" at position {s.lease.position}" if s.lease.state == "queued" else ""
        lines.append(f"- Target lease **{s.lease.state}**{where}: held by {holders}")
    if s.plan:
        lines.append(f"- Plan digest `{s.plan.digest}`: {len(s.plan.changes)} change(s)")
    running = [st.id for st in s.steps if st.status == StepStatus.RUNNING]
    if running:
        lines.append(f"- Running: {', '.join(running)}")
    if s.escalations:
        e = s.escalations[-1]
        lines.append(f"- Last escalation: {e.level} to {e.recipient} at {_at(e.at)}")
    failed = [(e, f) for e in s.escalations for f in e.failed]
    for e, f in failed[-3:]:
        lines.append(f"- **Notification FAILED**: {e.level} to {f.recipient} via {f.channel} "
                     f"after {f.attempts} attempt(s): {f.error[:160]}")
    if s.outcome_reason:
        lines.append(f"- {shorten(s.outcome_reason, 300)}")
    if len(lines) > MAX_LINES:  # by construction only with very long lists; keep the top
        lines = lines[:MAX_LINES - 1] + ["- … (more in `runbook status`)"]
    return "\n".join(lines)
