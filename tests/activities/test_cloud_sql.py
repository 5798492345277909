"""expand_sql / restore_sql: merged flags, exact restore, 409 in progress, op errors."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.cloud_sql import CloudSqlActivities
from runbook.activity_io import ExpandSqlParams

from .conftest import Runner
from .world import P, SQL, SQL_KEY, compensation, resource

EXPAND = ExpandSqlParams(project=P, instance=SQL, tier="db-custom-2-7680",
                         flags={"max_connections": "300"})


def settings_of(state) -> dict:
    s = resource(state, "sqladmin", SQL_KEY)["settings"]
    return {"tier": s["tier"], "databaseFlags": s.get("databaseFlags", [])}


async def test_expand_merges_flags_and_restore_puts_back_exactly(sim, clients, runner) -> None:
    acts = CloudSqlActivities(clients)
    original = settings_of(sim.state())
    out = await runner(acts.expand_sql, EXPAND)
    assert out.changed and out.resource == SQL_KEY
    assert out.before == {"tier": "db-custom-1-3840",
                          "databaseFlags": [{"name": "log_min_duration_statement",
                                             "value": "1000"}]}
    # PATCH replaces the whole list: the existing flag was kept, the new one added.
    assert out.after == {"tier": "db-custom-2-7680",
                         "databaseFlags": [{"name": "log_min_duration_statement", "value": "1000"},
                                           {"name": "max_connections", "value": "300"}]}
    assert settings_of(sim.state()) == out.after

    again = await Runner()(acts.expand_sql, EXPAND)
    assert not again.changed
    assert len(sim.mutations(api="sqladmin", method="PATCH")) == 1

    undo = compensation("expand-sql", EXPAND, out)
    restored = await Runner(activity_id="undo")(acts.restore_sql, undo)
    assert restored.changed and restored.after == out.before
    assert settings_of(sim.state()) == original
    # Restoring an already-restored instance is a no-op.
    assert not (await Runner(activity_id="undo")(acts.restore_sql, undo)).changed
    assert len(sim.mutations(api="sqladmin", method="PATCH")) == 2


async def test_restore_of_an_unchanged_step_does_nothing(sim, clients, runner) -> None:
    acts = CloudSqlActivities(clients)
    await runner(acts.expand_sql, EXPAND)
    noop = await Runner()(acts.expand_sql, EXPAND)
    out = await Runner()(acts.restore_sql, compensation("expand-sql", EXPAND, noop))
    assert not out.changed
    assert len(sim.mutations(api="sqladmin", method="PATCH")) == 1


async def test_instance_in_maintenance_is_a_retryable_conflict(sim, clients, runner) -> None:
    acts = CloudSqlActivities(clients)
    sim.fault(api="sqladmin", kind="sql_maintenance", resource=SQL)
    with pytest.raises(ApplicationError) as err:
        await runner(acts.expand_sql, EXPAND)
    assert err.value.type == "Conflict" and not err.value.non_retryable
    assert "operationInProgress" in err.value.message and SQL_KEY in err.value.message
    sim.clear_faults()
    # The next attempt (resuming from the checkpoint it heartbeated) goes through.
    retry = Runner(attempt=2, heartbeat_details=[runner.last_checkpoint()])
    out = await retry(acts.expand_sql, EXPAND)
    assert out.changed and out.before["tier"] == "db-custom-1-3840" and out.attempt == 2
    assert len(sim.mutations(api="sqladmin", method="PATCH")) == 1


async def test_unknown_tier_is_refused_naming_the_field(sim, clients, runner) -> None:
    acts = CloudSqlActivities(clients)
    bad = EXPAND.model_copy(update={"tier": "db-g1-standard-2"})
    with pytest.raises(ApplicationError) as err:
        await runner(acts.expand_sql, bad)
    assert err.value.type == "InvalidArgument" and err.value.non_retryable
    assert "settings.tier" in err.value.message


async def test_operation_error_carries_the_checkpoint(sim, clients, runner) -> None:
    acts = CloudSqlActivities(clients)
    sim.fault(api="sqladmin", kind="operation_error", code=14)
    with pytest.raises(ApplicationError) as err:
        await runner(acts.expand_sql, EXPAND)
    assert err.value.type == "OperationFailed" and not err.value.non_retryable
    assert err.value.details[0]["before"]["tier"] == "db-custom-1-3840"
    assert sim.mutations(api="sqladmin") == []


async def test_resume_after_crash_mid_operation(sim, clients) -> None:
    acts = CloudSqlActivities(clients)
    first = Runner()
    err = await first.run_until_operation(acts.expand_sql, EXPAND)
    assert isinstance(err, ApplicationError) and err.type == "Cancelled"
    second = Runner(attempt=2, heartbeat_details=[first.last_checkpoint()])
    out = await second(acts.expand_sql, EXPAND)
    assert out.changed and out.before["tier"] == "db-custom-1-3840"
    assert len(sim.mutations(api="sqladmin", method="PATCH")) == 1
