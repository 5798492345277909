"""Which version of the runbook a recorded run used, read from its patch markers.

A run records ``workflow.patched`` markers for the runbook changes it runs with (see
``runbook.default_runbook.GCP_FIDELITY_PATCH``). The audit rebuilds the plan with today's
runbook; for a run recorded before a change, that plan is not the one its approvers saw,
and the audit must say so rather than report a bare digest mismatch.
"""

from __future__ import annotations

from temporalio.api.history.v1 import HistoryEvent

from runbook.payloads import first
from runbook.default_runbook import GCP_FIDELITY_PATCH

PATCH_MARKER = "core_patch"  # the SDK's marker name for workflow.patched()


def patch_id(event: HistoryEvent) -> str | None:
    """The patch id a MarkerRecorded event carries, or None for another marker."""
    at = event.marker_recorded_event_attributes
    if at.marker_name != PATCH_MARKER or "patch-data" not in at.details:
        return None
    data = first(at.details["patch-data"])
    return data.get("id") if isinstance(data, dict) else None


def older_version_note(patches: set[str]) -> str | None:
    """Why a rebuilt plan may differ from the recorded run's, or None when it is current."""
    if GCP_FIDELITY_PATCH in patches:
        return None
    return (f"this run was recorded by an earlier runbook version (before {GCP_FIDELITY_PATCH}: "
            "serverless topology, startup probe, VPC access, Redis, certificate attach, "
            "alert metrics); the plan below is rebuilt with today's runbook and is not the "
            "one its approvers saw")
