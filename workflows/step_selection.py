"""Which steps of a phase run: the plan's verdict and the runbook version of the run.

Two reasons to pass a step over, both deterministic from history:
- the plan marked it not applicable on the diagnosed topology (a load-balancer setting
  Google refuses or ignores for a serverless backend): recorded as SKIPPED with the reason;
- the step was added to the runbook after this run's history was recorded: it runs only
  where ``workflow.patched(step.since_patch)`` holds, so older histories replay unchanged.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from runbook.definition import StepSpec
    from runbook.plan import Plan

NOT_IN_VERSION = "not part of the runbook version this run started with"


def skip_reason(step: StepSpec, plan: Plan | None) -> str | None:
    """Why ``step`` is not run, or None to run it. Call in step order (patch markers)."""
    if step.since_patch is not None and not workflow.patched(step.since_patch):
        return NOT_IN_VERSION
    if plan is not None:
        na = next((n for n in plan.not_applicable if n.step_id == step.id), None)
        if na is not None:
            return f"not applicable: {na.reason}"
    return None
