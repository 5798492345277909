"""Phase 4's soak: zero 503 for a continuous window, sampled on durable timers.

Any 503 (or an error rate over the limit) restarts the window; the phase budget, watched
by the caller, still applies. Progress is kept on the phase record so status and the UI
show samples, restarts and since when the window has been clean.
"""

from __future__ import annotations

from typing import Callable

from temporalio import workflow

from workflows.activity_calls import call, retry_policy

with workflow.unsafe.imports_passed_through():
    from runbook.activity_io import ErrorRateSample, StepOutcome
    from runbook.definition import SoakSpec, StepSpec
    from runbook.status import PhaseRecord


async def soak(step: StepSpec, spec: SoakSpec, rec: PhaseRecord,
               publish: Callable[[], None]) -> StepOutcome:
    clean_since = workflow.now()
    rec.soak_clean_since = clean_since
    window_requests = window_errors = 0
    while True:
        result: StepOutcome = await call(
            step.activity, step.params, StepOutcome,
            start_to_close_timeout=step.start_to_close,
            retry_policy=retry_policy(step.retry),
            summary=f"Soak sample {rec.soak_samples + 1}: GET {step.params.get('path')}")
        sample = ErrorRateSample.model_validate(result.data)
        rec.soak_samples += 1
        window_requests += sample.requests
        window_errors += sample.errors_503 + sample.errors_other
        rate = window_errors / window_requests if window_requests else 0.0
        if sample.errors_503 or rate > spec.max_error_rate:
            rec.soak_restarts += 1
            clean_since = workflow.now()
            rec.soak_clean_since = clean_since
            window_requests = window_errors = 0
        clean_for = (workflow.now() - clean_since).total_seconds()
        if clean_for >= spec.window_s and rec.soak_samples > rec.soak_restarts:
            return StepOutcome(
                changed=False, detail=f"{clean_for:.0f}s without 503 over "
                                      f"{rec.soak_samples} samples ({rec.soak_restarts} restarts)",
                data={"samples": rec.soak_samples, "restarts": rec.soak_restarts,
                      "window_error_rate": rate})
        publish()
        await workflow.sleep(min(spec.sample_every_s, max(1, spec.window_s - clean_for)),
                             summary=f"soak: {clean_for:.0f}/{spec.window_s}s clean")
