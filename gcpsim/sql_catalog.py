"""Cloud SQL catalogue: machine tiers, database flags and default max_connections."""
from __future__ import annotations

import re
from typing import Any

from .errors import invalid

GIB = 1024  # MiB

PG_VERSIONS = ["POSTGRES_12", "POSTGRES_13", "POSTGRES_14", "POSTGRES_15", "POSTGRES_16", "POSTGRES_17"]
MYSQL_VERSIONS = ["MYSQL_5_7", "MYSQL_8_0", "MYSQL_8_4"]
PERF_OPTIMIZED_VCPUS = (2, 4, 8, 16, 32, 48, 64, 80, 96, 128)
N1_VCPUS = (1, 2, 4, 8, 16, 32, 64, 96)


def tier_shape(tier: str, edition: str = "ENTERPRISE") -> tuple[float, int]:
    """(vCPUs, memory MiB) of a real Cloud SQL tier; INVALID_ARGUMENT naming the rule
    that is broken otherwise (e.g. the seeds' non-existent ``db-g1-standard-2``)."""
    field = "settings.tier"
    if not isinstance(tier, str):
        raise invalid(f"settings.tier: {tier!r} is not a tier name.", field)
    shared = {"db-f1-micro": (0.2, 614), "db-g1-small": (0.5, 1740)}
    if tier in shared:
        if edition == "ENTERPRISE_PLUS":
            raise invalid(f"settings.tier: '{tier}' (shared core) is only available with the ENTERPRISE edition.",
                          field)
        return shared[tier]
    m = re.fullmatch(r"db-custom-(\d+)-(\d+)", tier)
    if m:
        cpus, mem = int(m.group(1)), int(m.group(2))
        if not (cpus == 1 or (cpus % 2 == 0 and 2 <= cpus <= 96)):
            raise invalid(f"settings.tier: '{tier}': vCPUs must be 1 or an even number between 2 and 96.", field)
        if mem % 256 or mem < 3840:
            raise invalid(f"settings.tier: '{tier}': memory must be a multiple of 256 MiB and at least 3840 MiB.",
                          field)
        if not 0.9 * GIB * cpus <= mem <= 6.5 * GIB * cpus:
            raise invalid(f"settings.tier: '{tier}': memory must be between 0.9 and 6.5 GiB per vCPU.", field)
        if edition == "ENTERPRISE_PLUS":
            raise invalid(f"settings.tier: '{tier}' is not available with the ENTERPRISE_PLUS edition; "
                          "use db-perf-optimized-N-*.", field)
        return cpus, mem
    m = re.fullmatch(r"db-perf-optimized-N-(\d+)", tier)
    if m and int(m.group(1)) in PERF_OPTIMIZED_VCPUS:
        if edition != "ENTERPRISE_PLUS":
            raise invalid(f"settings.tier: '{tier}' requires settings.edition ENTERPRISE_PLUS.", field)
        return int(m.group(1)), int(m.group(1)) * 8 * GIB
    m = re.fullmatch(r"db-n1-(standard|highmem)-(\d+)", tier)
    if m and int(m.group(2)) in N1_VCPUS and not (m.group(1) == "highmem" and m.group(2) == "1"):
        per = 3.75 if m.group(1) == "standard" else 6.5
        return int(m.group(2)), int(int(m.group(2)) * per * GIB)
    raise invalid(f"settings.tier: '{tier}' is not a valid Cloud SQL tier. Valid tiers are db-f1-micro, "
                  "db-g1-small, db-custom-<vCPUs>-<MiB> (e.g. db-custom-2-7680), db-n1-standard-N, "
                  "db-n1-highmem-N and db-perf-optimized-N-<vCPUs>.", field)


def check_engine(tier: str, edition: str, version: str) -> None:
    """Cloud SQL for PostgreSQL takes only custom and shared-core tiers (and, for Enterprise
    Plus, the performance-optimised ones): legacy db-n1-* is refused (GCP_FIDELITY A7; Google's
    text, "Invalid request: " included, as quoted in serverpod#2373)."""
    if not str(version).startswith("POSTGRES"):
        return
    ok = tier.startswith("db-custom-") or tier in ("db-f1-micro", "db-g1-small") or \
        (edition == "ENTERPRISE_PLUS" and tier.startswith("db-perf-optimized-N-"))
    if not ok:
        raise invalid("Invalid request: Only custom or shared-core instance Billing Tier type allowed for "
                      "PostgreSQL database.", "settings.tier")


def default_max_connections(memory_mib: int) -> int:
    """Cloud SQL for PostgreSQL's default max_connections by instance memory (GCP_FIDELITY A8):
    25 for db-f1-micro (< 1 GiB) is sourced (Cloud SQL FAQ); 50 (g1-small, < 3.75 GiB),
    100 (< 6 GiB), 400 (< 30 GiB), 500 (< 120 GiB) and 1000 are unverified."""
    gib = memory_mib / GIB
    for limit, conns in ((1, 25), (3.75, 50), (6, 100), (30, 400), (120, 500)):
        if gib < limit:
            return conns
    return 1000


def listed_tiers() -> list[str]:
    custom = [f"db-custom-{c}-{int(c * 3.75 * GIB)}" for c in (1, 2, 4, 8, 16, 32, 64, 96)]
    custom += [f"db-custom-{c}-{m}" for c, m in ((1, 6656), (2, 13312), (4, 26624))]
    perf = [f"db-perf-optimized-N-{c}" for c in PERF_OPTIMIZED_VCPUS]
    return ["db-f1-micro", "db-g1-small"] + custom + perf


def tier_items(region: str) -> list[dict[str, Any]]:
    items = []
    for tier in listed_tiers():
        edition = "ENTERPRISE_PLUS" if tier.startswith("db-perf") else "ENTERPRISE"
        _, mem = tier_shape(tier, edition)
        items.append({"kind": "sql#tier", "tier": tier, "RAM": str(mem * 2**20),
                      "DiskQuota": str(65536 * 2**30), "region": [region]})
    return items


# name -> (type, min, max, requiresRestart, appliesTo, allowed string values)
FLAGS: dict[str, dict[str, Any]] = {
    "max_connections": {"type": "INTEGER", "minValue": 14, "maxValue": 262143, "requiresRestart": True,
                        "appliesTo": PG_VERSIONS},
    "max_worker_processes": {"type": "INTEGER", "minValue": 8, "maxValue": 4096, "requiresRestart": True,
                             "appliesTo": PG_VERSIONS},
    "log_min_duration_statement": {"type": "INTEGER", "minValue": -1, "maxValue": 2147483647,
                                   "requiresRestart": False, "appliesTo": PG_VERSIONS},
    "idle_in_transaction_session_timeout": {"type": "INTEGER", "minValue": 0, "maxValue": 2147483647,
                                            "requiresRestart": False, "appliesTo": PG_VERSIONS},
    "statement_timeout": {"type": "INTEGER", "minValue": 0, "maxValue": 2147483647, "requiresRestart": False,
                          "appliesTo": PG_VERSIONS},
    "work_mem": {"type": "INTEGER", "minValue": 64, "maxValue": 2147483647, "requiresRestart": False,
                 "appliesTo": PG_VERSIONS},
    "log_connections": {"type": "BOOLEAN", "requiresRestart": False, "appliesTo": PG_VERSIONS},
    "cloudsql.iam_authentication": {"type": "BOOLEAN", "requiresRestart": False, "appliesTo": PG_VERSIONS},
    "wait_timeout": {"type": "INTEGER", "minValue": 1, "maxValue": 31536000, "requiresRestart": False,
                     "appliesTo": MYSQL_VERSIONS},
    "max_connections@mysql": {"name": "max_connections", "type": "INTEGER", "minValue": 10, "maxValue": 100000,
                              "requiresRestart": False, "appliesTo": MYSQL_VERSIONS},
}


def flag_def(name: str, version: str) -> dict[str, Any] | None:
    for key, spec in FLAGS.items():
        if spec.get("name", key) == name and version in spec["appliesTo"]:
            return spec | {"name": name}
    return None


def flag_items(version: str | None) -> list[dict[str, Any]]:
    items = []
    for key, spec in FLAGS.items():
        if version and version not in spec["appliesTo"]:
            continue
        item: dict[str, Any] = {"kind": "sql#flag", "name": spec.get("name", key), "type": spec["type"],
                                "appliesTo": spec["appliesTo"], "requiresRestart": spec["requiresRestart"]}
        if spec["type"] == "INTEGER":
            item["minValue"], item["maxValue"] = str(spec["minValue"]), str(spec["maxValue"])
        items.append(item)
    return items


def validate_flags(flags: Any, version: str) -> dict[str, str]:
    """databaseFlags -> {name: value}; INVALID_ARGUMENT for unknown names or bad values."""
    field = "settings.databaseFlags"
    if not isinstance(flags, list):
        raise invalid("settings.databaseFlags: must be a list of {name, value}.", field)
    out: dict[str, str] = {}
    for f in flags:
        if not isinstance(f, dict):
            raise invalid(f"settings.databaseFlags: {f!r} is not a {{name, value}} object.", field)
        name, value = f.get("name"), f.get("value")
        spec = flag_def(name, version)
        if spec is None:
            raise invalid(f"settings.databaseFlags: invalid flag name '{name}' for {version}.", field)
        if name in out:
            raise invalid(f"settings.databaseFlags: flag '{name}' is set more than once.", field)
        if value is None:
            raise invalid(f"settings.databaseFlags: flag '{name}' needs a value.", field)
        value = str(value)
        if spec["type"] == "INTEGER":
            if not re.fullmatch(r"-?\d+", value) or not spec["minValue"] <= int(value) <= spec["maxValue"]:
                raise invalid(f"settings.databaseFlags: flag '{name}' value '{value}' must be an integer "
                              f"between {spec['minValue']} and {spec['maxValue']}.", field)
        elif value not in ("on", "off"):
            raise invalid(f"settings.databaseFlags: flag '{name}' value must be 'on' or 'off'.", field)
        out[name] = value
    return out
