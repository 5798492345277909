"""The requests the fuzz trial saw accepted and failing late (after phase 1's irreversible
connector change) are refused by the workflow itself, before any activity runs."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import new_queue, start, worker_for

REFUSED = {
    "cpu 8 with 2Gi": ({"desired": {"backend_cpu": "8", "backend_memory": "2Gi"}},
                       "desired.backend_memory"),
    "64Gi": ({"desired": {"backend_memory": "64Gi"}}, "desired.backend_memory"),
    "wildcard domain": ({"targets": {"certificate_domains": ["*.netrasystems.ai"]}},
                        "targets.certificate_domains.0"),
    "no domain": ({"targets": {"certificate_domains": []}}, "targets.certificate_domains"),
    "gate timeout 1e12 s": ({"approval": {"default": {"timeout_s": 10**12}}},
                            "approval.default.timeout_s"),
    "budget 1e13 s": ({"budgets": {"phase_2_s": 10**13}}, "budgets.phase_2_s"),
    "control characters": ({"targets": {"auth_service": "auth\x1b[2J"}}, "targets.auth_service"),
    "path segments": ({"targets": {"project": "../../etc/passwd"}}, "targets.project"),
    "only the requester may approve": (
        {"requested_by": "carol", "approval": {"default": {"approvers": ["Carol "]}}},
        "approval.default.approvers"),
}


@pytest.mark.parametrize("request_, field", REFUSED.values(), ids=list(REFUSED))
async def test_a_request_the_api_would_refuse_runs_nothing(time_skipping_env, request_, field):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, request_, tq)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidRequest"
    assert cause.non_retryable and f"{field}: " in cause.message
    assert cloud.calls == [] and cloud.mutations == [] and cloud.notifications == []
