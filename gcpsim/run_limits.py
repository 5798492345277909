"""Cloud Run container limits the front end checks synchronously: the cpu/memory table
(GCP_FIDELITY A6) and the startup probe (A2), plus the startup-probe window a revision
gets before Cloud Run gives up on it.

Field paths in messages follow the request (``template.containers[i]...``) except the
memory refusal, which quotes Cloud Run's own text (it names the Knative path
``spec.template.spec.containers[i].resources.limits.memory``).
"""
from __future__ import annotations

import re
from typing import Any

from .errors import invalid

MI, GI = 2**20, 2**30
CPU_VALUES = {1.0, 2.0, 4.0, 6.0, 8.0}
# Cloud Run docs "Configure CPU limits for services" (vCPU and memory table: .08 vCPU up to
# 512 MiB, .5 up to 1 GiB, 1 up to 4 GiB, 2 up to 8 GiB, 4: 2-16 GiB, 6: 4-24 GiB, 8: 4-32 GiB;
# below 1 vCPU: concurrency 1, first generation only) and "Configure memory limits"
# (minimum 128 MiB gen1, 512 MiB gen2; maximum 32 GiB). Checked through a documentation
# search on 2026-11-29.
MIN_MEMORY_FOR_CPU = {4.0: 2 * GI, 6.0: 4 * GI, 8.0: 4 * GI}
MAX_MEMORY_FOR_CPU = {1.0: 4 * GI, 2.0: 8 * GI, 4.0: 16 * GI, 6.0: 24 * GI, 8.0: 32 * GI}

# Cloud Run's startup probe when none is configured: TCP on the container port, timeout
# 240 s, period 240 s, failure threshold 1, so a container gets 240 s to listen (Cloud Run
# docs "Configure container health checks (services)", "The default TCP startup probe").
# Cloud Run caps a startup probe's failureThreshold x periodSeconds at 240 s (the jobs and
# worker-pools health-check pages say so; for services a public report, PolicyEngine/
# policyengine-api#3764, describes the same cap plus initialDelaySeconds <= 240, so the
# longest start any probe tolerates is 480 s). The wording of the refusal is unverified.
DEFAULT_STARTUP_WINDOW_S = 240
STARTUP_MAX_THRESHOLD_WINDOW_S = 240
STARTUP_MAX_DELAY_S = 240   # run_v2 Probe: initial_delay_seconds max for startup probes
STARTUP_MAX_PERIOD_S = 240  # run_v2 Probe: period_seconds max for startup probes
PROBE_DEFAULTS = {"initialDelaySeconds": 0, "timeoutSeconds": 1, "periodSeconds": 10, "failureThreshold": 3}


def parse_cpu(value: str) -> float | None:
    value = str(value).strip()
    try:
        return float(value[:-1]) / 1000 if value.endswith("m") else float(value)
    except ValueError:
        return None


_MEM = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEM_UNIT = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_memory(value: str) -> int | None:
    m = _MEM.match(str(value).strip())
    return int(float(m.group(1)) * _MEM_UNIT[m.group(2)]) if m else None


def limits(container: dict[str, Any]) -> tuple[float, int]:
    """(cpu, memory bytes) of a container, with Cloud Run's defaults (1 CPU, 512Mi)."""
    lim = container.get("resources", {}).get("limits", {})
    cpu = parse_cpu(lim.get("cpu", "1")) or 1.0
    mem = parse_memory(lim.get("memory", "512Mi")) or 512 * MI
    return cpu, mem


def _fmt(n: int) -> str:
    return f"{n // GI}Gi" if n % GI == 0 else f"{n // MI}Mi"


def memory_range(cpu: float, gen2: bool) -> tuple[int, int]:
    lo = max(512 * MI if gen2 else 128 * MI, MIN_MEMORY_FOR_CPU.get(cpu, 0))
    hi = 512 * MI if cpu < 0.5 else GI if cpu < 1 else MAX_MEMORY_FOR_CPU.get(cpu, 32 * GI)
    return lo, hi


def validate_resources(template: dict[str, Any]) -> None:
    """cpu value and the cpu/memory pair, refused before anything is stored (A6)."""
    # Unverified: an unspecified execution environment is treated as gen1 (128 MiB minimum),
    # Cloud Run's historical default for services.
    gen2 = template.get("executionEnvironment") == "EXECUTION_ENVIRONMENT_GEN2"
    for i, c in enumerate(template.get("containers") or []):
        field = f"template.containers[{i}].resources.limits"
        lim = c.get("resources", {}).get("limits", {})
        if "cpu" in lim:
            cpu = parse_cpu(lim["cpu"])
            if cpu is None or not (cpu in CPU_VALUES or 0.08 <= cpu < 1):
                raise invalid(f"{field}.cpu: '{lim['cpu']}' is not supported; use 1, 2, 4, 6 or 8 "
                              "(or a fraction below 1).", f"{field}.cpu")
        if "memory" in lim and parse_memory(lim["memory"]) is None:
            raise invalid(f"{field}.memory: '{lim['memory']}' is not a quantity like 512Mi or 4Gi.",
                          f"{field}.memory")
        cpu, mem = limits(c)
        if cpu < 1:
            # "If you use less than 1 vCPU": concurrency 1 and the first generation (CPU limits
            # docs). Unverified: the wording of these refusals.
            if template.get("maxInstanceRequestConcurrency", 80) != 1:
                raise invalid(f"template.maxInstanceRequestConcurrency: must be 1 with less than 1 CPU "
                              f"({lim.get('cpu')}).", "template.maxInstanceRequestConcurrency")
            if gen2:
                raise invalid(f"template.executionEnvironment: less than 1 CPU ({lim.get('cpu')}) needs the "
                              "first generation execution environment.", "template.executionEnvironment")
        lo, hi = memory_range(cpu, gen2)
        if not lo <= mem <= hi:
            # Cloud Run's wording (public error reports, GCP_FIDELITY A6).
            raise invalid(f"spec.template.spec.containers[{i}].resources.limits.memory: Invalid value specified "
                          f"for container memory. For {float(cpu)} CPU, memory must be between {_fmt(lo)} and "
                          f"{_fmt(hi)} inclusive.", f"{field}.memory")


def _probe_int(probe: dict[str, Any], name: str, field: str, lo: int, hi: int | None) -> int:
    value = probe.get(name, PROBE_DEFAULTS[name])
    if not lo <= value <= (hi if hi is not None else value):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise invalid(f"{field}.{name}: {value} is invalid; it must be {bound}.", f"{field}.{name}")
    return value


def validate_startup_probe(template: dict[str, Any]) -> None:
    """run_v2 Probe rules for startup probes (k8s_min.Probe docs). Unverified: the exact
    wording of Cloud Run's refusals."""
    for i, c in enumerate(template.get("containers") or []):
        probe = c.get("startupProbe")
        if probe is None:
            continue
        field = f"template.containers[{i}].startupProbe"
        _probe_int(probe, "initialDelaySeconds", field, 0, STARTUP_MAX_DELAY_S)
        period = _probe_int(probe, "periodSeconds", field, 1, STARTUP_MAX_PERIOD_S)
        _probe_int(probe, "timeoutSeconds", field, 1, period)  # timeout <= period
        threshold = _probe_int(probe, "failureThreshold", field, 1, None)
        if threshold * period > STARTUP_MAX_THRESHOLD_WINDOW_S:
            raise invalid(f"{field}: failureThreshold * periodSeconds must not exceed "
                          f"{STARTUP_MAX_THRESHOLD_WINDOW_S} seconds for a startup probe; got "
                          f"{threshold} * {period} = {threshold * period}.", f"{field}.failureThreshold")
        kinds = [k for k in ("httpGet", "tcpSocket", "grpc") if k in probe]
        if len(kinds) > 1:
            raise invalid(f"{field}: only one of httpGet, tcpSocket or grpc may be set.", field)
        path = probe.get("httpGet", {}).get("path", "/")
        if "httpGet" in probe and not str(path).startswith("/"):
            raise invalid(f"{field}.httpGet.path: '{path}' must start with '/'.", f"{field}.httpGet.path")


def _ingress_probe(template: dict[str, Any]) -> dict[str, Any] | None:
    """The ingress (first) container's startup probe with the defaults filled in, or None
    when it has no configured probe (Cloud Run then uses its default TCP probe)."""
    probe = (template.get("containers") or [{}])[0].get("startupProbe")
    return None if probe is None else PROBE_DEFAULTS | probe


def startup_window(template: dict[str, Any]) -> int:
    """Seconds the ingress container gets to pass its startup probe:
    initialDelaySeconds + failureThreshold x periodSeconds (240 s without a probe)."""
    p = _ingress_probe(template)
    if p is None:
        return DEFAULT_STARTUP_WINDOW_S
    return p["initialDelaySeconds"] + p["failureThreshold"] * p["periodSeconds"]


def startup_initial_delay(template: dict[str, Any]) -> int:
    """Seconds before the ingress container's first startup probe (0 without a probe)."""
    p = _ingress_probe(template)
    return int(p["initialDelaySeconds"]) if p else 0


def startup_failure_message(template: dict[str, Any]) -> str:
    """Cloud Run's text for a container that never passed its startup probe (unverified
    wording, from public reports): the configured-probe text, or the default TCP probe's."""
    if _ingress_probe(template) is not None:
        return ("The user-provided container failed the configured startup probe checks. Logs for this "
                "revision might contain more information.")
    return ("The user-provided container failed to start and listen on the port defined provided by the "
            "PORT=8080 environment variable within the allocated timeout (the default TCP startup probe "
            f"allows {DEFAULT_STARTUP_WINDOW_S} s). Logs for this revision might contain more information.")
