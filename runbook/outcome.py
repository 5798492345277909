"""How a run's outcome shows in Temporal, decided once.

- SUCCEEDED: the workflow **Completed**; its result is the ``RemediationReport``.
- Any other outcome (ROLLED_BACK, ABORTED, REJECTED, TIMED_OUT, REFUSED, FAILED): the
  workflow **Failed** with a non-retryable ``ApplicationError`` whose ``type`` names the
  outcome (below) and whose first detail is the full report, so the UI's Failures filter
  and ``temporal workflow describe`` never show a run that did not remediate as green.
- Cancelled (Temporal cancel, e.g. the UI's Cancel): the rollback runs, then the workflow
  ends **Canceled**. A cancellation carries no result, so the report is first written to
  the memo under ``report``.
- Terminated: no workflow code runs; ``runbook status``/``audit`` rebuild what was left
  in force from the history and ``runbook rollback`` undoes it.

Runs recorded before this rule (no ``safety-1`` patch marker) completed with the report
as their result whatever the outcome; ``runbook.run_result.final_report`` and the audit
read both.
"""

from __future__ import annotations

from typing import Any

from runbook.status import RemediationReport, RunState

OUTCOME_ERROR_TYPE: dict[RunState, str] = {
    RunState.ROLLED_BACK: "RunRolledBack",
    RunState.ABORTED: "RunAborted",
    RunState.REJECTED: "RunRejected",
    RunState.TIMED_OUT: "RunTimedOut",
    RunState.REFUSED: "TargetsBusy",
    RunState.FAILED: "RollbackIncomplete",
}
MEMO_REPORT = "report"


def report_from_details(details: Any) -> RemediationReport | None:
    """The report carried as the first detail of an outcome failure, if there is one."""
    if not details:
        return None
    first = details[0] if isinstance(details, (list, tuple)) else details
    try:
        return RemediationReport.model_validate(first)
    except Exception:  # noqa: BLE001 - another failure's details: no report
        return None

# The workflow patch that introduced this rule, target leases and per-channel
# notifications (workflows/remediation.py calls workflow.patched with it at run start).
SAFETY_PATCH = "safety-1"
# Issue 10: a rollback step that runs long is logged and escalated, and cleanup yields to
# an abort (both add timers, so runs recorded before it replay without them).
FAULTS_PATCH = "faults-1"
# Runs started since ``operator-1``: a failed step may ask (decision gates), a run can be
# paused, and each phase gate after the first re-diagnoses for drift. Older runs replay
# without any of it.
OPERATOR_PATCH = "operator-1"
