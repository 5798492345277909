"""Phase 4's soak: zero 503 for a continuous window, sampled on durable timers.

Any 503 (or an error rate over the limit) restarts the window; the phase budget, watched
by the caller, still applies. Progress is kept on the phase record so status and the UI
show samples, restarts and since when the window has been clean.

History bound: each sample costs about a dozen history events (activity, timer, workflow
tasks), and only the phase's hard limit ends a soak that keeps restarting. The interval
is stretched (and the outcome says so) when the hard limit would allow more than
``PLANNED_SOAK_SAMPLES`` samples, rather than pushing the run towards Temporal's
51,200-event limit, where the server would terminate it with nothing rolled back. A soak
that still reaches ``MAX_SOAK_SAMPLES`` (a window shorter than the interval, restarting
every time) fails with that reason, and the run rolls back as for any failed phase.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Callable

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.activity_calls import call, retry_policy

with workflow.unsafe.imports_passed_through():
    from runbook.activity_io import ErrorRateSample, StepOutcome
    from runbook.definition import SoakSpec, StepSpec
    from runbook.status import PhaseRecord


# At ~12 events a sample (tests/workflow/test_history_bounds.py measures it), 500 samples
# are ~6,000 events: with the rest of a run (a few hundred) under Temporal's 10,240-event
# warning. The cap is twice that (the last sleep of a window can be short, so a soak that
# restarts just before its end samples more often): ~12,000 events, a quarter of the limit.
PLANNED_SOAK_SAMPLES = 500
MAX_SOAK_SAMPLES = 2 * PLANNED_SOAK_SAMPLES
# Histories recorded before the bound sampled at the requested interval however long.
SOAK_SAMPLE_BOUND_PATCH = "soak-sample-bound-1"


def sample_interval_s(spec: SoakSpec, rec: PhaseRecord) -> int:
    """The requested interval, or longer when the hard limit would allow more than
    PLANNED_SOAK_SAMPLES samples. Only a stretched interval asks for the patch, so runs with
    ordinary settings keep exactly the command sequence they always had."""
    floor = math.ceil(rec.hard_limit_s / PLANNED_SOAK_SAMPLES)
    if floor > spec.sample_every_s and workflow.patched(SOAK_SAMPLE_BOUND_PATCH):
        return floor
    return spec.sample_every_s


async def soak(step: StepSpec, spec: SoakSpec, rec: PhaseRecord,
               publish: Callable[[], None]) -> StepOutcome:
    every_s = sample_interval_s(spec, rec)
    stretched = (f"; sampled every {every_s}s, not {spec.sample_every_s}s, to keep the "
                 f"history bounded ({PLANNED_SOAK_SAMPLES} samples within the hard limit)"
                 if every_s != spec.sample_every_s else "")
    clean_since = workflow.now()
    rec.soak_clean_since = clean_since
    window_requests = window_errors = 0
    while True:
        result: StepOutcome = await call(
            step.activity, step.params, StepOutcome,
            start_to_close_timeout=step.start_to_close,
            heartbeat_timeout=timedelta(seconds=step.heartbeat_s) if step.heartbeat_s else None,
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
                                      f"{rec.soak_samples} samples ({rec.soak_restarts} restarts){stretched}",
                data={"samples": rec.soak_samples, "restarts": rec.soak_restarts,
                      "window_error_rate": rate})
        if rec.soak_samples >= MAX_SOAK_SAMPLES and workflow.patched(SOAK_SAMPLE_BOUND_PATCH):
            raise ApplicationError(
                f"no clean {spec.window_s}s window in {rec.soak_samples} samples "
                f"({rec.soak_restarts} restarts); the soak stops at {MAX_SOAK_SAMPLES} samples "
                "to keep the run's history bounded", type="SoakNeverClean", non_retryable=True)
        publish()
        await workflow.sleep(min(every_s, max(1, spec.window_s - clean_for)),
                             summary=f"soak: {clean_for:.0f}/{spec.window_s}s clean")
