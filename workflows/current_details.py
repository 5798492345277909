"""The markdown the Temporal UI shows as "Current Details" (workflow.set_current_details)."""

from __future__ import annotations

from datetime import datetime

from runbook.status import RunStatus, StepStatus


def _at(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%SZ") if t else "-"


def render_current_details(s: RunStatus) -> str:
    lines = [f"**Incident {s.incident_id}** - state **{s.state.value}**"]
    if s.current_phase:
        ph = s.phases[s.current_phase - 1]
        lines.append(f"- Phase {ph.number}: {ph.title} ({ph.owner}), {ph.status}; "
                     f"budget at {_at(ph.budget_at)}, hard limit at {_at(ph.hard_limit_at)}")
    if s.pending_gate:
        g = s.pending_gate
        lines.append(f"- Gate **{g.id}** awaiting {g.min_approvals - len(g.approvals)} more "
                     f"approval(s); remind {_at(g.remind_at)}, escalate {_at(g.escalate_at)}, "
                     f"times out {_at(g.timeout_at)}")
        lines.append(f'- Approve: update `approve_gate` or signal `approve` with '
                     f'`{{"gate": "{g.id}", "approver": "<you>"}}`')
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
        lines.append(f"- {s.outcome_reason}")
    return "\n".join(lines)
