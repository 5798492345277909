"""Cloud Run limits a request is checked against (GCP_FIDELITY A6): CPU and memory,
the startup probe's caps and environment variables. Pure; a request breaking them is
refused before anything runs, where Cloud Run would answer 400 mid-run.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from runbook import resource_names as names

CLOUD_RUN_CPUS = ("1", "2", "4", "8")
# Cloud Run's largest memory limit (8 CPU, second generation).
CLOUD_RUN_MEMORY_MAX_MIB = 32 * 1024
_MEMORY = re.compile(r"([0-9]{1,9})(Mi|Gi)")


def memory_mib(memory: str) -> int:
    m = _MEMORY.fullmatch(memory)
    if not m:
        raise ValueError(f"{names.shown(memory)} is not a memory size like 512Mi or 6Gi")
    return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)


def cloud_run_memory_problem(cpu: str, memory: str) -> str | None:
    """Why Cloud Run refuses this cpu/memory pair (GCP_FIDELITY A6), or None.

    Source: Cloud Run "Configure memory limits" / "CPU limits" tables (second-generation
    execution environment: at least 512 MiB). Cloud Run answers 400 INVALID_ARGUMENT
    naming ``limits.memory``; checking here refuses the request before anything runs.
    """
    mib = memory_mib(memory)
    bounds = {"1": (512, 4096), "2": (512, 8192), "4": (2048, 16384), "8": (4096, 32768)}
    lo, hi = bounds.get(cpu, (512, 32768))
    if not lo <= mib <= hi:
        return (f"for {cpu} CPU, Cloud Run needs memory between {lo}Mi and {hi // 1024}Gi "
                f"inclusive (second generation); {memory} is outside")
    return None


# Cloud Run caps a startup probe's failureThreshold x periodSeconds at 240 s, and its
# initialDelaySeconds at 240 s: no probe tolerates a start longer than 480 s. Sources: the
# jobs and worker-pools health-check pages state the 240 s cap; for services, a public
# report (PolicyEngine/policyengine-api#3764) measured both caps. run_v2 Probe: period and
# initial delay at most 240 for a startup probe, timeout not above the period.
STARTUP_THRESHOLD_WINDOW_MAX_S = 240
STARTUP_INITIAL_DELAY_MAX_S = 240
STARTUP_WINDOW_MAX_S = STARTUP_INITIAL_DELAY_MAX_S + STARTUP_THRESHOLD_WINDOW_MAX_S


def _env_name(name: str) -> str:
    problem = names.ENV_VAR_NAME.problem(name)
    if problem:
        raise ValueError(problem)
    if name in names.RESERVED_ENV_VARS or name.startswith("X_GOOGLE_"):
        raise ValueError(f"{name} is set by Cloud Run itself (reserved: "
                         f"{', '.join(names.RESERVED_ENV_VARS)}, X_GOOGLE_*)")
    return name


def _env_value(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character, which no environment variable can hold")
    return value


# name -> value; at most 100 per request field (our bound).
EnvVars = Annotated[dict[
    Annotated[str, AfterValidator(_env_name)],
    Annotated[str, Field(max_length=names.ENV_VALUE_MAX_CHARS), AfterValidator(_env_value)],
], Field(max_length=100)]
