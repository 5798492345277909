"""Build the run's final ``RemediationReport`` from its status record."""

from __future__ import annotations

from runbook.definition import Runbook
from runbook.iac_followup import follow_up
from runbook.status import (
    ChangeRecord,
    PhaseSummary,
    RemediationReport,
    RunStatus,
    StepRecord,
    StepStatus,
)


def _change(rec: StepRecord) -> ChangeRecord:
    return ChangeRecord(step_id=rec.id, resource=rec.resource, summary=rec.summary,
                        before=rec.before, after=rec.after)


# A change in force at the end of a run: applied and not undone.
_IN_FORCE = (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.LEFT_IN_PLACE,
             StepStatus.COMPENSATION_FAILED,
             # skipped by a decision after sending part of its change
             StepStatus.SKIPPED)


def build_report(s: RunStatus, *, revisions_left: list[str] | None = None,
                 book: Runbook | None = None) -> RemediationReport:
    mutated = [r for r in s.steps if r.kind == "mutate" and r.changed]
    in_force = [r for r in mutated if r.status in _IN_FORCE]
    iac = []
    if book is not None:
        for r in in_force:
            step = book.step(r.id)
            iac.extend(follow_up(r.id, step.activity, step.params))
    return RemediationReport(
        incident_id=s.incident_id,
        outcome=s.state,
        reason=s.outcome_reason,
        started_at=s.started_at,
        finished_at=s.finished_at,
        plan_digest=s.plan.digest if s.plan else None,
        phases=[PhaseSummary(number=p.number, title=p.title, status=p.status,
                             budget_s=p.budget_s, duration_s=p.duration_s,
                             budget_breached=p.budget_breached,
                             skipped_steps=p.skipped_steps) for p in s.phases],
        approvals=[a for g in s.gates for a in g.approvals],
        changes_applied=[_change(r) for r in mutated],
        changes_reverted=[_change(r) for r in mutated if r.status == StepStatus.COMPENSATED],
        changes_left_in_place=[_change(r) for r in mutated
                               if r.status in (StepStatus.LEFT_IN_PLACE,
                                               StepStatus.COMPENSATION_FAILED)],
        changes_outcome_unknown=[_change(r) for r in s.steps if r.outcome_unknown],
        escalations=s.escalations,
        revisions_left_in_place=revisions_left or [],
        problems=[f"{r.id}: {r.error}" for r in s.steps if r.error],
        iac_followup=iac,
        decisions=[g.decision for g in s.gates if g.decision is not None],
        pauses=s.pauses,
        identity=s.identity, verified_messages=s.verified_messages,
    )
