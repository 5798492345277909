"""Drift re-approval: before each phase gate after the first, look at the world again.

A gate may wait for hours while someone changes Cloud SQL by hand; an approval must
refer to the world it releases, not to the one the plan was made from. So the run
diagnoses again (read-only), rebuilds the plan, and compares (runbook/drift.py). When a
target of the remaining phases differs from the plan, or a finished change was reverted,
the rebuilt plan and its new digest replace the old ones, the gate lists the drift, the
phase's escalation chain hears of it, and an approval carrying the old digest is refused
(workflows/gate_rules.py). A diagnosis that fails keeps the plan and says so on the gate:
the gate still opens, since blocking a remediation on a read would be worse.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.activity_calls import diagnose
from workflows.step_errors import error_text

with workflow.unsafe.imports_passed_through():
    from runbook.definition import PhaseSpec, Runbook
    from runbook.drift import describe_drift, find_drift, rebuilt_plan
    from runbook.plan import build_plan
    from runbook.request import RemediationRequest
    from runbook.status import GateRecord, RunStatus, StepStatus


async def check_drift(req: RemediationRequest, book: Runbook, status: RunStatus,
                      phase: PhaseSpec, gate: GateRecord,
                      notify: Callable[..., Awaitable[None]]) -> None:
    """Re-diagnose before ``phase``'s gate; rebuild the plan if anything drifted."""
    planned = status.plan
    if planned is None:
        return
    try:
        diag = await diagnose(req, f"Before gate {gate.id}: re-read every target to find what "
                                   "changed since the plan (read-only)")
    except (ActivityError, ApplicationError) as err:
        gate.drift_check_error = (f"could not re-read the targets ({error_text(err)}); the "
                                  "plan shown is the one made before phase 1")
        return
    finished = {st.id for st in status.steps if 0 < st.phase < phase.number}
    ran = {st.id for st in status.steps
           if st.id in finished and st.status == StepStatus.SUCCEEDED}
    remaining = {st.id for st in status.steps if st.phase >= phase.number}
    fresh = build_plan(req, book, diag)
    drift = find_drift(planned, fresh, ran, remaining)
    if not drift:
        return
    rebuilt = rebuilt_plan(planned, fresh, finished, drift)
    status.plan = rebuilt
    gate.drift = drift
    await notify("reminder", phase.escalation[0],
                 f"Incident {status.incident_id}: the plan changed before gate {gate.id}",
                 f"{describe_drift(drift)}. New plan digest {rebuilt.digest} (was "
                 f"{planned.digest}); approvals must carry the new digest.",
                 phase=phase.number, gate=gate.id)
