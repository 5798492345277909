"""Read an exported workflow history (`temporal workflow show --output json`, or the UI's
download) for an offline audit."""

from __future__ import annotations

import json
import os

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory


def history_from_file(path: str, workflow_id: str | None = None) -> WorkflowHistory:
    """Parse `temporal workflow show -w ID --output json` (or UI download) output."""
    with open(path) as fh:
        raw = json.load(fh)
    # Exports do not always carry the workflow id; the file name is the next best label.
    if not isinstance(raw, dict) or not isinstance(raw.get("events"), list):
        raise ValueError('expected a JSON object with an "events" list')
    wid = workflow_id or _workflow_id_from(raw) or os.path.splitext(os.path.basename(path))[0]
    history = WorkflowHistory.from_json(wid, raw)
    # A partial or foreign file would give a misleading audit: insist on a whole history.
    if not history.events or history.events[0].event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        raise ValueError("the first event is not WorkflowExecutionStarted (not a complete history)")
    return history


def _workflow_id_from(raw: dict) -> str | None:
    # The export does not carry the workflow id except inside the started event.
    for ev in raw.get("events", [])[:1]:
        attrs = ev.get("workflowExecutionStartedEventAttributes") or {}
        return attrs.get("workflowId") or None
    return None
