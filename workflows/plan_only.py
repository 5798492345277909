"""RemediationPlanWorkflow: diagnose and return the plan, changing nothing.

Runs on the worker (which holds the cloud credentials) so ``runbook plan`` needs none.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from runbook import activity_names as act
    from runbook.activity_io import DiagnoseParams, Diagnosis
    from runbook.default_runbook import alert_policy_names, build_runbook
    from runbook.messages import PLAN_WORKFLOW_TYPE
    from runbook.plan import Plan, build_plan
    from runbook.request import request_problems


@workflow.defn(name=PLAN_WORKFLOW_TYPE, failure_exception_types=[Exception])
class RemediationPlanWorkflow:
    @workflow.run
    async def run(self, request: Any = None) -> Plan:
        req, problems = request_problems(request)
        if req is None:
            reason = "; ".join(f"{p.field}: {p.reason}" for p in problems)
            raise ApplicationError(f"InvalidRequest: {reason}", [p.model_dump() for p in problems],
                                   type="InvalidRequest", non_retryable=True)
        t = req.targets
        diag = await workflow.execute_activity(
            act.DIAGNOSE,
            DiagnoseParams(project=t.project, region=t.region, connector=t.connector,
                           sql_instance=t.sql_instance,
                           run_services=[t.backend_service, t.auth_service],
                           health_checks=list(t.health_checks),
                           backend_services=t.backend_services, certificate=t.certificate,
                           required_secrets=t.required_secrets,
                           alert_policy_names=alert_policy_names(req)),
            result_type=Diagnosis, start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30),
                                     non_retryable_error_types=["InvalidArgument",
                                                                "PermissionDenied", "NotFound"]),
            summary=f"Diagnose {t.project} (read-only, plan only)")
        return build_plan(req, build_runbook(req), diag)
