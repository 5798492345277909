"""RemediationPlanWorkflow: diagnose and return the plan, changing nothing.

Runs on the worker (which holds the cloud credentials) so ``runbook plan`` needs none.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.activity_calls import diagnose
from workflows.failure_types import BUG_EXCEPTION_TYPES

with workflow.unsafe.imports_passed_through():
    from runbook.default_runbook import build_runbook
    from runbook.messages import PLAN_WORKFLOW_TYPE
    from runbook.plan import Plan, build_plan
    from runbook.request import describe_problems, request_problems


@workflow.defn(name=PLAN_WORKFLOW_TYPE, failure_exception_types=BUG_EXCEPTION_TYPES)
class RemediationPlanWorkflow:
    @workflow.run
    async def run(self, request: Any = None) -> Plan:
        req, problems = request_problems(request)
        if req is None:
            raise ApplicationError(f"InvalidRequest: {describe_problems(problems)}",
                                   [p.model_dump() for p in problems],
                                   type="InvalidRequest", non_retryable=True)
        diag = await diagnose(req, f"Diagnose {req.targets.project} (read-only, plan only)")
        return build_plan(req, build_runbook(req), diag)
