"""Build an audit of one run from its Temporal event history (live or exported JSON).

History is the record nobody can edit after the fact, so the audit is derived from it
alone: who started the run and with what, who approved or refused each gate (update and
signal events carry the caller's identity), every activity with its summary, attempts,
duration and outcome, notifications and timers, and the run's own final report (the
workflow result) which is authoritative whenever the run has finished.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.converter import decode_typed_search_attributes

from cli.audit_identity import message_proof, run_identity, trusted_proof
from cli.audit_model import (
    ActivityRecord,
    AuditReport,
    Decision,
    Notification,
    PhaseAudit,
    StateChange,
    TimelineEntry,
    TimerRecord,
)
from cli.diffs import format_value
from runbook.payloads import decode, first
from cli.audit_plan import rebuild_plan
from cli.runbook_version import patch_id
from runbook import activity_names as act
from runbook import messages as m
from runbook.activity_io import UNDO_PREFIX
from runbook.outcome import MEMO_REPORT, report_from_details
from runbook.changes_in_force import abandoned_run
from runbook.request import request_problems
from runbook.status import TERMINAL_STATES, ChangeRecord, RunState
from workflows import search_attributes as sa

# Updates refused by their validator never reach history (Temporal does not record them);
# the audit says so instead of implying there were none.
VALIDATOR_NOTE = ("Approvals refused by the workflow's validator are not written to history "
                  "by Temporal, so they do not appear here.")


def _at(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=timezone.utc)


def _failure_text(f: Failure) -> str:
    parts = []
    while f is not None and (f.message or f.HasField("cause")):
        if f.message:
            parts.append(f.message)
        f = f.cause if f.HasField("cause") else None
    return " ← ".join(parts) or "failed"


def _summary(event: HistoryEvent) -> str:
    if not event.HasField("user_metadata") or not event.user_metadata.HasField("summary"):
        return ""
    value = decode(event.user_metadata.summary)
    return value if isinstance(value, str) else str(value)


class _Builder:
    def __init__(self, history: WorkflowHistory, source: str) -> None:
        self.a = AuditReport(workflow_id=history.workflow_id, source=source,
                             generated_at=datetime.now(timezone.utc))
        self.events = list(history.events)
        self.activities: dict[int, ActivityRecord] = {}  # by scheduled event id
        self.timers: dict[int, TimerRecord] = {}  # by started event id
        self.updates: dict[str, Decision] = {}  # by update id
        self.diagnosis: Any = None
        self.rediagnosed = False
        self.patches: set[str] = set()
        self.memo_report: Any = None

    def build(self) -> AuditReport:
        for ev in self.events:
            handler = getattr(self, "_on_" + (ev.WhichOneof("attributes") or ""), None)
            if handler:
                handler(ev, getattr(ev, ev.WhichOneof("attributes")))
        a = self.a
        a.activities = sorted(self.activities.values(), key=lambda r: r.scheduled_at)
        a.identity = run_identity(a.activities)
        for d in a.decisions:
            d.proof = trusted_proof(d.proof, d.via, d.result, a.identity)
        a.timers = sorted(self.timers.values(), key=lambda t: t.started_at)
        a.notifications = [self._notification(r) for r in a.activities
                           if r.activity_type in (act.NOTIFY, act.NOTIFY_CHANNEL)]
        self._signal_results()
        self._plan()
        self._changes()
        self._phases()
        a.notes.append(VALIDATOR_NOTE)
        self._timeline()
        return a

    # --- event handlers (named after the history event's attributes field) ------------

    def _on_workflow_execution_started_event_attributes(self, ev, at) -> None:
        a = self.a
        a.workflow_type = at.workflow_type.name
        a.task_queue = at.task_queue.name
        a.run_id = at.original_execution_run_id or at.first_execution_run_id
        a.started_at = _at(ev)
        a.started_by = at.identity
        a.static_summary = _summary(ev)
        a.request = first(at.input)
        _, problems = request_problems(a.request)
        a.request_problems = [f"{p.field}: {p.reason}" for p in problems]
        if isinstance(a.request, dict):
            a.requested_by = str(a.request.get("requested_by") or "")

    def _on_marker_recorded_event_attributes(self, ev, at) -> None:
        pid = patch_id(ev)
        if pid:
            self.patches.add(pid)

    def _on_activity_task_scheduled_event_attributes(self, ev, at) -> None:
        self.activities[ev.event_id] = ActivityRecord(
            event_id=ev.event_id, activity_id=at.activity_id, activity_type=at.activity_type.name, summary=_summary(ev),
            scheduled_at=_at(ev), input=first(at.input))

    def _on_activity_task_started_event_attributes(self, ev, at) -> None:
        # Written once, when the last attempt ends, carrying the attempt number.
        rec = self.activities.get(at.scheduled_event_id)
        if rec:
            rec.attempts = at.attempt
            if at.HasField("last_failure"):
                rec.error = _failure_text(at.last_failure)

    def _close_activity(self, ev, scheduled_id: int, outcome: str, error: str | None = None,
                        result: Any = None) -> None:
        rec = self.activities.get(scheduled_id)
        if not rec:
            return
        rec.closed_at = _at(ev)
        rec.duration_s = (rec.closed_at - rec.scheduled_at).total_seconds()
        rec.outcome = outcome
        rec.attempts = max(rec.attempts, 1)
        rec.error = error if outcome != "completed" else None
        rec.result = result
        if rec.activity_type == act.DIAGNOSE and outcome == "completed":
            # The plan is made from the first diagnosis; later ones re-read the targets
            # before a gate (drift, operator-1) or the revisions left after a cleanup.
            self.rediagnosed = self.diagnosis is not None
            if self.diagnosis is None:
                self.diagnosis = result

    def _on_activity_task_completed_event_attributes(self, ev, at) -> None:
        self._close_activity(ev, at.scheduled_event_id, "completed", result=first(at.result))

    def _on_activity_task_failed_event_attributes(self, ev, at) -> None:
        self._close_activity(ev, at.scheduled_event_id, "failed", _failure_text(at.failure))

    def _on_activity_task_timed_out_event_attributes(self, ev, at) -> None:
        self._close_activity(ev, at.scheduled_event_id, "timed out", _failure_text(at.failure))

    def _on_activity_task_canceled_event_attributes(self, ev, at) -> None:
        self._close_activity(ev, at.scheduled_event_id, "canceled", "canceled")

    def _on_timer_started_event_attributes(self, ev, at) -> None:
        self.timers[ev.event_id] = TimerRecord(
            event_id=ev.event_id, timer_id=at.timer_id, summary=_summary(ev), started_at=_at(ev),
            duration_s=at.start_to_fire_timeout.ToTimedelta().total_seconds())

    def _on_timer_fired_event_attributes(self, ev, at) -> None:
        if at.started_event_id in self.timers:
            self.timers[at.started_event_id].outcome = "fired"
            self.timers[at.started_event_id].ended_at = _at(ev)
            self.timers[at.started_event_id].end_event_id = ev.event_id

    def _on_timer_canceled_event_attributes(self, ev, at) -> None:
        if at.started_event_id in self.timers:
            self.timers[at.started_event_id].outcome = "canceled"
            self.timers[at.started_event_id].ended_at = _at(ev)

    def _decision(self, ev, name: str, payload: Any, via: str, identity: str) -> Decision | None:
        action = {m.UPDATE_APPROVE: "approve", m.SIGNAL_APPROVE: "approve",
                  m.UPDATE_REJECT: "reject", m.SIGNAL_REJECT: "reject",
                  m.SIGNAL_ABORT: "abort", m.UPDATE_DECIDE: "decide", m.UPDATE_PAUSE: "pause",
                  m.UPDATE_RESUME: "resume"}.get(name)
        if action is None:
            return None
        p = payload if isinstance(payload, dict) else {}
        comment = str(p.get("comment") or p.get("reason") or "")
        if action == "decide":  # what was decided leads: "retry: flaky quota, try again"
            comment = f"{p.get('decision')}: {comment}" if comment else str(p.get("decision"))
        return Decision(at=_at(ev), event_id=ev.event_id, action=action, via=via, gate=p.get("gate"),
                        actor=p.get("approver") or p.get("by"), identity=identity,
                        comment=comment,
                        plan_digest=p.get("plan_digest"), proof=message_proof(p),
                        result="received" if via == "signal" else "accepted")

    def _on_workflow_execution_signaled_event_attributes(self, ev, at) -> None:
        d = self._decision(ev, at.signal_name, first(at.input), "signal", at.identity)
        if d:
            self.a.decisions.append(d)

    def _on_workflow_execution_update_accepted_event_attributes(self, ev, at) -> None:
        req = at.accepted_request
        d = self._decision(ev, req.input.name, first(req.input.args), "update", req.meta.identity)
        if d:
            self.a.decisions.append(d)
            self.updates[req.meta.update_id or at.protocol_instance_id] = d

    def _on_workflow_execution_update_completed_event_attributes(self, ev, at) -> None:
        d = self.updates.get(at.meta.update_id)
        if d is None:
            return
        if at.outcome.HasField("failure"):
            d.result = f"failed: {_failure_text(at.outcome.failure)}"
        else:
            ack = first(at.outcome.success)
            if isinstance(ack, dict) and "gate_status" in ack:
                d.result = (f"accepted ({ack.get('approvals')}/{ack.get('required')} approvals, "
                            f"gate {ack.get('gate_status')})")

    def _on_workflow_execution_cancel_requested_event_attributes(self, ev, at) -> None:
        self.a.decisions.append(Decision(at=_at(ev), event_id=ev.event_id, action="cancel-request", via="api",
                                         identity=at.identity, comment=at.cause, result="received"))

    def _on_upsert_workflow_search_attributes_event_attributes(self, ev, at) -> None:
        attrs = decode_typed_search_attributes(at.search_attributes)
        change = StateChange(at=_at(ev), event_id=ev.event_id, state=attrs.get(sa.STATE),
                             phase=attrs.get(sa.PHASE))
        if change.state is not None or change.phase is not None:
            self.a.state_changes.append(change)

    def _on_workflow_execution_completed_event_attributes(self, ev, at) -> None:
        a = self.a
        a.closed_at, a.closed_as = _at(ev), "COMPLETED"
        result = first(at.result)
        if not self._take_report(result):
            a.outcome = "COMPLETED"
            a.outcome_detail = f"result: {format_value(result, 500)}"

    def _on_workflow_execution_failed_event_attributes(self, ev, at) -> None:
        # Since safety-1 every outcome but SUCCEEDED ends here, the report in the details.
        self.a.closed_at, self.a.closed_as = _at(ev), "FAILED"
        info = at.failure.application_failure_info
        if not self._take_report(first(info.details) if info.HasField("details") else None):
            self.a.outcome = "FAILED"
            self.a.outcome_detail = _failure_text(at.failure)

    def _on_workflow_properties_modified_event_attributes(self, ev, at) -> None:
        # A cancelled run writes its report to the memo before it ends (runbook/outcome.py).
        fields = at.upserted_memo.fields
        if MEMO_REPORT in fields:
            self.memo_report = decode(fields[MEMO_REPORT])

    def _take_report(self, value: Any) -> bool:
        report = report_from_details([value]) if value is not None else None
        if report is None:
            return False
        self.a.report, self.a.outcome = report, report.outcome.value
        self.a.outcome_detail = report.reason
        return True

    def _on_workflow_execution_terminated_event_attributes(self, ev, at) -> None:
        self.a.closed_at, self.a.outcome = _at(ev), "TERMINATED"
        self.a.closed_as = "TERMINATED"
        self.a.outcome_detail = f"terminated by {at.identity or 'unknown'}: {at.reason}"
        self.a.decisions.append(Decision(at=_at(ev), event_id=ev.event_id, action="terminate", via="api",
                                         identity=at.identity, comment=at.reason, result="done"))

    def _on_workflow_execution_canceled_event_attributes(self, ev, at) -> None:
        self.a.closed_at, self.a.closed_as = _at(ev), "CANCELED"
        if not self._take_report(self.memo_report):
            self.a.outcome = "CANCELED"

    def _on_workflow_execution_timed_out_event_attributes(self, ev, at) -> None:
        self.a.closed_at, self.a.outcome = _at(ev), "TIMED_OUT"
        self.a.closed_as = "TIMED_OUT"
        self.a.outcome_detail = "the workflow execution timeout expired"

    # --- derived sections -------------------------------------------------------------

    def _notification(self, r: ActivityRecord) -> Notification:
        p = r.input if isinstance(r.input, dict) else {}
        return Notification(at=r.scheduled_at, event_id=r.event_id, level=str(p.get("level", "")),
                            recipient=str(p.get("recipient", "")),
                            subject=str(p.get("subject", r.summary)), outcome=r.outcome,
                            channel=str(p.get("channel", "")), attempts=r.attempts, error=r.error)

    def _signal_results(self) -> None:
        """Signals are not validated when sent: say whether the run applied each one."""
        report = self.a.report
        if report is None:
            return
        applied = {(a.gate, a.approver) for a in report.approvals if a.via == "signal"}
        for d in self.a.decisions:
            if d.via == "signal" and d.action == "approve":
                d.result = ("applied (in the run's approvals)" if (d.gate, d.actor) in applied
                            else "ignored by the run (not in its approvals)")

    def _plan(self) -> None:
        rebuild_plan(self.a, self.diagnosis, self.rediagnosed, self.patches)

    def _changes(self) -> None:
        a = self.a
        if a.report is not None:
            a.changes_applied = a.report.changes_applied
            a.changes_reverted = a.report.changes_reverted
            a.changes_left_in_place = a.report.changes_left_in_place
            a.changes_outcome_unknown = a.report.changes_outcome_unknown
            a.changes_source = "the run's final report"
            return
        # Still running (or ended without a report): what completed activities say they did.
        for r in a.activities:
            res = r.result if isinstance(r.result, dict) else {}
            if r.outcome == "completed" and res.get("changed") is True:
                rec = ChangeRecord(step_id=r.activity_id, resource=str(res.get("resource", "")),
                                   summary=r.summary or r.activity_type,
                                   before=res.get("before") or {}, after=res.get("after") or {})
                undo = r.activity_id.startswith(UNDO_PREFIX)
                if undo:
                    rec.step_id = r.activity_id.removeprefix(UNDO_PREFIX)
                target = a.changes_reverted if undo else a.changes_applied
                target.append(rec)
        a.changes_source = "completed activities that reported changed=true (run has no final report)"

    def _phases(self) -> None:
        a = self.a
        if a.report is not None and a.report.phases:
            a.phases = [PhaseAudit(number=p.number, title=p.title, status=p.status,
                                   budget_s=p.budget_s, actual_s=p.duration_s,
                                   breached=p.budget_breached, source="final report")
                        for p in a.report.phases]
            return
        # Fallback: phase boundaries from the RemediationPhase/State search attribute changes.
        # A phase ends when the run next waits at a gate, rolls back, ends, or moves to another
        # phase. Ending it at the next phase's start would count the wait for the next approval
        # against its budget, and a live run waiting at a gate would breach it by waiting.
        req, _ = request_problems(a.request)
        end = a.closed_at or a.generated_at
        stops = {s.value for s in (RunState.AWAITING_APPROVAL, RunState.ROLLING_BACK, *TERMINAL_STATES)}
        changes = a.state_changes
        for i, change in enumerate(changes):
            number = change.phase
            if not number or any(p.number == number for p in a.phases):
                continue
            start = change.at
            stop = next((c.at for c in changes[i + 1:]
                         if c.state in stops or (c.phase and c.phase != number)), end)
            budget = req.budgets.budget_s(number) if req and 1 <= number <= 4 else None
            actual = (stop - start).total_seconds()
            a.phases.append(PhaseAudit(number=number, budget_s=budget, actual_s=actual,
                                       breached=(actual > budget) if budget else None,
                                       source="search attribute changes (approximate)"))

    def _timeline(self) -> None:
        a = self.a
        t: list[TimelineEntry] = []
        if a.started_at:
            t.append(TimelineEntry(at=a.started_at, event_id=1, kind="start",
                                   text=f"{a.workflow_type} started by {a.started_by or 'unknown'}"
                                        f" (requested by {a.requested_by or 'unknown'})"))
        for d in a.decisions:
            who = d.actor or "?"
            gate = f" gate {d.gate}" if d.gate else ""
            extra = f": {d.comment}" if d.comment else ""
            t.append(TimelineEntry(at=d.at, event_id=d.event_id, kind=d.action,
                                   text=f"{d.action}{gate} by {who} via {d.via} [{d.identity}]"
                                        f"{extra} — {d.result}"))
        for r in a.activities:
            if r.activity_type in (act.NOTIFY, act.NOTIFY_CHANNEL):
                continue  # listed as notifications below
            what = r.summary or r.activity_type
            t.append(TimelineEntry(at=r.scheduled_at, event_id=r.event_id, kind="activity",
                                   text=f"{what} — {r.outcome}, {r.attempts} attempt(s)"
                                        + (f", {r.duration_s:.1f}s" if r.duration_s is not None else "")))
        for n in a.notifications:
            t.append(TimelineEntry(at=n.at, event_id=n.event_id, kind=f"notify:{n.level}",
                                   text=f"{n.level} to {n.recipient}: {n.subject}"))
        for tm in a.timers:
            if tm.outcome == "fired":
                t.append(TimelineEntry(at=tm.ended_at or tm.started_at, event_id=tm.end_event_id,
                                       kind="timer",
                                       text=f"timer fired after {tm.duration_s:g}s: "
                                            f"{tm.summary or tm.timer_id}"))
        for c in a.state_changes:
            bits = [f"state {c.state}" if c.state else "", f"phase {c.phase}" if c.phase else ""]
            t.append(TimelineEntry(at=c.at, event_id=c.event_id, kind="state", text=", ".join(b for b in bits if b)))
        if a.closed_at:
            t.append(TimelineEntry(at=a.closed_at, event_id=len(self.events), kind="end",
                                   text=f"run ended: {a.outcome}"
                                        + (f" — {a.outcome_detail}" if a.outcome_detail else "")))
        a.timeline = sorted(t, key=lambda e: (e.at, e.event_id))


def build_audit(history: WorkflowHistory, source: str = "live history") -> AuditReport:
    return _Builder(history, source).build().model_copy(update={"in_force": abandoned_run(history)})
