"""Read a finished run's ``RemediationReport`` whichever way it ended (runbook/outcome.py)."""

from __future__ import annotations

from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from runbook.outcome import MEMO_REPORT, report_from_details
from runbook.status import RemediationReport


async def final_report(handle: WorkflowHandle) -> RemediationReport:
    """The report of a closed run: its result, the details of its outcome failure, or
    (cancelled) its memo. Raises the workflow's failure when it carries no report (an
    invalid request, a refused plan, a bug)."""
    try:
        return RemediationReport.model_validate(await handle.result(follow_runs=False))
    except WorkflowFailureError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            report = report_from_details(cause.details)
            if report is not None:
                return report
        if isinstance(cause, CancelledError):
            report = await memo_report(handle)
            if report is not None:
                return report
        raise


async def memo_report(handle: WorkflowHandle) -> RemediationReport | None:
    desc = await handle.describe()
    try:
        raw = await desc.memo_value(MEMO_REPORT, None)
    except KeyError:
        return None
    return RemediationReport.model_validate(raw) if raw is not None else None
