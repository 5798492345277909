"""The audit's plan: rebuilt from the request and the diagnosis recorded in history.

The plan is a pure function of the two (runbook/plan.py), so this is the plan the
approvers of the first gate saw; its digest is checked against the one the run reported.
Since ``operator-1`` a run may rebuild its plan at a later gate when targets drifted
(workflows/drift_check.py): the reported digest is then the rebuilt plan's, and the
audit says so rather than warn of a mismatch.
"""

from __future__ import annotations

from typing import Any

from cli.audit_model import AuditReport
from cli.runbook_version import older_version_note
from runbook.activity_io import Diagnosis
from runbook.plan import build_plan
from runbook.request import request_problems


def rebuild_plan(a: AuditReport, diagnosis: Any, rediagnosed: bool, patches: Any) -> None:
    """Set ``a.plan`` and ``a.plan_note`` (and notes on approvals of other plans).

    ``diagnosis``: the first completed diagnosis in history; ``rediagnosed``: whether
    the run read its targets again later (drift checks, revisions left in place)."""
    req, _ = request_problems(a.request)
    if req is None or diagnosis is None:
        a.plan_note = "no completed diagnosis in history yet" if req else "request is not valid"
        return
    from runbook.default_runbook import build_runbook

    try:
        a.plan = build_plan(req, build_runbook(req), Diagnosis.model_validate(diagnosis))
    except Exception as err:  # a history from another version of the models
        a.plan_note = f"could not rebuild the plan from history: {err}"
        return
    reported = a.report.plan_digest if a.report else None
    digests = {d.plan_digest for d in a.decisions if d.plan_digest}
    older = older_version_note(patches)
    known = {a.plan.digest}
    if reported and reported != a.plan.digest and rediagnosed and not older:
        a.plan_note = (f"rebuilt from the request and the first diagnosis (digest "
                       f"{a.plan.digest}); the run rebuilt its plan at a later gate because "
                       f"targets drifted, and reported digest {reported}: see the gates' "
                       "drift in `runbook status`")
        known.add(reported)
    elif reported and reported != a.plan.digest:
        a.plan_note = (f"WARNING: the run reported plan digest {reported} but the plan rebuilt "
                       f"from history has digest {a.plan.digest}"
                       + (f": {older}" if older else ""))
    else:
        a.plan_note = "rebuilt from the request and the recorded diagnosis"
    if older and not a.plan_note.startswith("WARNING"):
        a.plan_note = f"WARNING: {older}"
    for d in sorted(digests - known):
        a.notes.append(f"an approval named plan digest {d}, which is not this run's plan "
                       f"({a.plan.digest})")
