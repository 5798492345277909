"""Cloud SQL Admin v1 through the discovery client."""
from __future__ import annotations

import pytest
from gcpsim_helpers import PROJECT, add_fault, advance, discovery, mutations
from googleapiclient.errors import HttpError

INSTANCE = "netra-staging-db"


@pytest.fixture
def sql(sim):
    return discovery(sim, "sqladmin", "v1")


def _get(sql):
    return sql.instances().get(project=PROJECT, instance=INSTANCE).execute()


def _patch(sql, settings):
    return sql.instances().patch(project=PROJECT, instance=INSTANCE, body={"settings": settings}).execute()


def test_catalogue(sim, sql):
    inst = _get(sql)
    assert (inst["state"], inst["databaseVersion"], inst["settings"]["tier"]) == (
        "RUNNABLE", "POSTGRES_14", "db-custom-1-3840")
    tiers = {t["tier"] for t in sql.tiers().list(project=PROJECT).execute()["items"]}
    assert {"db-f1-micro", "db-g1-small", "db-custom-2-7680"} <= tiers and "db-g1-standard-2" not in tiers
    flags = {f["name"]: f for f in sql.flags().list(databaseVersion="POSTGRES_14").execute()["items"]}
    mc = flags["max_connections"]
    assert mc["requiresRestart"] is True and (mc["minValue"], mc["maxValue"]) == ("14", "262143")


@pytest.mark.parametrize("settings,needle", [
    ({"tier": "db-g1-standard-2"}, "settings.tier"),
    ({"tier": "db-custom-3-7680"}, "vCPUs"),
    ({"tier": "db-custom-2-20000"}, "memory"),
    ({"tier": "db-perf-optimized-N-4"}, "ENTERPRISE_PLUS"),
    ({"databaseFlags": [{"name": "max_connections", "value": "5"}]}, "max_connections"),
    ({"databaseFlags": [{"name": "max_conections", "value": "300"}]}, "max_conections"),
])
def test_refusals(sim, sql, settings, needle):
    with pytest.raises(HttpError) as err:
        _patch(sql, settings)
    assert err.value.status_code == 400 and needle in err.value.reason


def test_tier_change_restarts_and_blocks_concurrent_patch(sim, sql):
    op = _patch(sql, {"tier": "db-custom-2-7680", "databaseFlags": [{"name": "max_connections", "value": "300"}]})
    assert op["kind"] == "sql#operation" and op["status"] in ("PENDING", "RUNNING")
    assert _get(sql)["state"] == "MAINTENANCE"
    with pytest.raises(HttpError) as err:
        _patch(sql, {"databaseFlags": []})
    assert err.value.status_code == 409 and err.value.error_details[0]["reason"] == "operationInProgress"
    advance(sim, 310)
    done = sql.operations().get(project=PROJECT, operation=op["name"]).execute()
    assert done["status"] == "DONE" and "error" not in done
    inst = _get(sql)
    assert inst["state"] == "RUNNABLE" and inst["settings"]["tier"] == "db-custom-2-7680"
    # databaseFlags replaced the whole list: the old log_min_duration_statement is gone.
    assert inst["settings"]["databaseFlags"] == [{"name": "max_connections", "value": "300"}]
    assert [m["method"] for m in mutations(sim)] == ["PATCH"]
    same = _patch(sql, {"tier": "db-custom-2-7680"})
    assert same["status"] == "DONE" and len(mutations(sim)) == 1


def test_maintenance_fault_and_operation_error(sim, sql):
    add_fault(sim, kind="sql_maintenance", api="sqladmin", resource=INSTANCE)
    assert _get(sql)["state"] == "MAINTENANCE"
    with pytest.raises(HttpError) as err:
        _patch(sql, {"tier": "db-custom-2-7680"})
    assert err.value.status_code == 409
    assert sim.admin("GET", "/_sim/faults")["faults"][0]["fired"] == 1
    sim.admin("DELETE", "/_sim/faults")
    assert _get(sql)["state"] == "RUNNABLE"
    add_fault(sim, kind="operation_error", api="sqladmin", method="PATCH")
    op = _patch(sql, {"tier": "db-custom-2-7680"})
    advance(sim, 310)
    done = sql.operations().get(project=PROJECT, operation=op["name"]).execute()
    assert done["status"] == "DONE" and done["error"]["errors"][0]["message"]
    assert _get(sql)["settings"]["tier"] == "db-custom-1-3840" and mutations(sim) == []


def test_flags_are_stored_normalised_so_int_values_and_order_are_no_change(sim, sql):
    op = _patch(sql, {"databaseFlags": [{"name": "max_connections", "value": 300},
                                        {"name": "log_min_duration_statement", "value": 1000}]})
    advance(sim, 130)  # a restart-flag change
    assert sql.operations().get(project=PROJECT, operation=op["name"]).execute()["status"] == "DONE"
    expected = [{"name": "log_min_duration_statement", "value": "1000"}, {"name": "max_connections", "value": "300"}]
    assert _get(sql)["settings"]["databaseFlags"] == expected
    assert len(mutations(sim)) == 1
    for flags in ([{"name": "max_connections", "value": "300"}, {"name": "log_min_duration_statement", "value": "1000"}],
                  [{"name": "log_min_duration_statement", "value": 1000}, {"name": "max_connections", "value": 300}]):
        same = _patch(sql, {"databaseFlags": flags})
        assert same["status"] == "DONE"  # no operation to wait for: no restart
        assert _get(sql)["state"] == "RUNNABLE" and len(mutations(sim)) == 1


@pytest.mark.parametrize("tier", ["db-n1-standard-2", "db-n1-highmem-4"])
def test_postgres_refuses_legacy_tiers(sim, sql, tier):
    """A7: PostgreSQL takes custom or shared-core tiers only."""
    with pytest.raises(HttpError) as err:
        _patch(sql, {"tier": tier})
    assert err.value.status_code == 400
    assert err.value.reason == ("Invalid request: Only custom or shared-core instance Billing Tier type allowed for "
                                "PostgreSQL database.")
    assert _get(sql)["settings"]["tier"] == "db-custom-1-3840" and mutations(sim) == []


@pytest.mark.parametrize("tier, expected", [
    ("db-f1-micro", 25), ("db-g1-small", 50), ("db-custom-1-3840", 100), ("db-custom-2-7680", 400),
    ("db-custom-8-32768", 500), ("db-custom-32-122880", 1000)])
def test_default_max_connections_follow_the_tier_memory(sim, sql, tier, expected):
    """A8: without a max_connections flag the tier's memory decides (the health model uses it)."""
    _patch(sql, {"tier": tier, "databaseFlags": []})
    advance(sim, 310)
    assert _get(sql)["settings"]["tier"] == tier
    assert sim.admin("GET", "/_sim/app")["database"]["max_connections"] == expected
