"""Cloud SQL for PostgreSQL limits that depend on the tier (GCP_FIDELITY A7, A8).

Pure functions, shared by the plan's preflight and the phase-1 verification. The
simulator keeps its own copy of these rules on purpose: a rehearsal must not agree with
the runbook just because both read the same table.
"""

from __future__ import annotations

import re

# ASCII digits, bounded: \d would take other scripts' digits, and int() of a huge one raises.
_CUSTOM = re.compile(r"db-custom-([0-9]{1,3})-([0-9]{1,7})")
_SHARED_CORE_MIB = {"db-f1-micro": 614, "db-g1-small": 1740}
GIB = 1024


def tier_memory_mib(tier: str) -> int | None:
    """Memory of a tier in MiB, or None for a tier whose memory this table does not know."""
    if tier in _SHARED_CORE_MIB:
        return _SHARED_CORE_MIB[tier]
    m = _CUSTOM.fullmatch(tier)
    return int(m.group(2)) if m else None


def default_max_connections(tier: str) -> int | None:
    """PostgreSQL's ``max_connections`` when the flag is not set, by the tier's memory.

    Source: Cloud SQL for PostgreSQL "Quotas and limits" (maximum concurrent connections).
    Only the db-f1-micro row (25) is confirmed by a source we could read; the other rows
    are the documented table as recalled and are marked unverified in GCP_FIDELITY A8.
    """
    if tier == "db-f1-micro":
        return 25
    if tier == "db-g1-small":
        return 50
    mib = tier_memory_mib(tier)
    if mib is None:
        return None
    if mib < 3.75 * GIB:
        return 25
    if mib < 6 * GIB:
        return 100
    if mib < 30 * GIB:
        return 400
    if mib < 120 * GIB:
        return 500
    return 1000


def postgres_tier_problem(tier: str, edition: str) -> str | None:
    """Why Cloud SQL for PostgreSQL would refuse ``tier`` (GCP_FIDELITY A7), or None."""
    if tier in _SHARED_CORE_MIB:
        if edition == "ENTERPRISE_PLUS":
            return f"{tier} is a shared-core tier, offered only in the ENTERPRISE edition"
        return None
    if _CUSTOM.fullmatch(tier):
        return None
    if tier.startswith("db-perf-optimized-N-"):
        # An unread edition ("") is not judged: Google answers for it at the patch.
        if edition and edition != "ENTERPRISE_PLUS":
            return f"{tier} needs the ENTERPRISE_PLUS edition (the instance is {edition})"
        return None
    return ("Only custom or shared-core instance Billing Tier type allowed for PostgreSQL "
            f"database (Google's message); {tier} is neither")


_SHARED_CORE_TIERS = tuple(_SHARED_CORE_MIB)
_PERF_TIER = re.compile(r"db-perf-optimized-N-(2|4|8|16|32|48|64|80|96|128)")


def cloud_sql_tier_problem(tier: str) -> str | None:
    """Why ``tier`` is not a real Cloud SQL tier name, or None when it is (any engine:
    the documented custom-machine rule; the engine's own limits are in
    ``postgres_tier_problem``)."""
    if tier in _SHARED_CORE_TIERS or _PERF_TIER.fullmatch(tier):
        return None
    m = _CUSTOM.fullmatch(tier)
    if not m:
        shown = repr(tier) if len(tier) <= 40 else f"{tier[:40]!r}... ({len(tier)} characters)"
        return (
            f"{shown} is not a Cloud SQL tier; use db-f1-micro, db-g1-small, "
            "db-custom-<vCPU>-<MiB> (e.g. db-custom-2-7680) or db-perf-optimized-N-<vCPU>"
        )
    vcpu, mib = int(m.group(1)), int(m.group(2))
    if not (vcpu == 1 or (vcpu % 2 == 0 and 2 <= vcpu <= 96)):
        return f"{tier!r}: vCPU must be 1 or an even number up to 96"
    if mib % 256 or mib < 3840 or not (0.9 * 1024 * vcpu <= mib <= 6.5 * 1024 * vcpu):
        return f"{tier!r}: memory must be a multiple of 256 MiB, >= 3840, and 0.9-6.5 GiB per vCPU"
    return None
