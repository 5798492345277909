"""Cloud SQL Admin v1: expand an instance (tier + flags) and restore it exactly.

``settings.databaseFlags`` in a PATCH replaces the whole list, so the forward step merges
the requested flags into the current list, and the restore sends back the recorded list.
Only one admin operation runs per instance: a 409 ``operationInProgress`` maps to a
retryable Conflict and Temporal's backoff waits it out.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity

from activities.clients import GcpClients, execute
from activities.mutation import Mutation
from activities.operations import Operations
from runbook import activity_names
from runbook.activity_io import CompensationInput, ExpandSqlParams, StepOutcome


def instance_resource(project: str, instance: str) -> str:
    return f"projects/{project}/instances/{instance}"


def read_instance(clients: GcpClients, project: str, instance: str) -> dict[str, Any]:
    return execute(clients.discovery("sqladmin").instances().get(project=project,
                                                                 instance=instance))


def sql_record(inst: dict[str, Any]) -> dict[str, Any]:
    """What restore_sql needs: the tier and the complete flag list, as the API gave them."""
    settings = inst.get("settings", {})
    return {
        "tier": settings.get("tier", ""),
        "databaseFlags": [{"name": f["name"], "value": f.get("value", "")}
                          for f in settings.get("databaseFlags", [])],
    }


def flags_dict(flags: list[dict[str, Any]]) -> dict[str, str]:
    return {f["name"]: str(f.get("value", "")) for f in flags}


def merge_flags(current: list[dict[str, Any]], wanted: dict[str, str]) -> list[dict[str, str]]:
    """The current list with ``wanted`` set (order kept, new flags appended)."""
    out = [{"name": f["name"], "value": str(wanted.get(f["name"], f.get("value", "")))}
           for f in current]
    known = {f["name"] for f in current}
    out += [{"name": k, "value": str(v)} for k, v in wanted.items() if k not in known]
    return out


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["tier"] == b["tier"]
            and flags_dict(a["databaseFlags"]) == flags_dict(b["databaseFlags"]))


class CloudSqlActivities:
    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients
        self.ops = Operations(clients)

    def _patch(self, project: str, instance: str, target: dict[str, Any]) -> dict[str, Any]:
        body = {"settings": {"tier": target["tier"], "databaseFlags": target["databaseFlags"]}}
        return execute(self.clients.discovery("sqladmin").instances().patch(
            project=project, instance=instance, body=body))

    async def _converge(self, m: Mutation, project: str, instance: str,
                        target_of: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Read, patch to ``target_of(current)`` if different, wait; (found, after)."""
        if m.pending_operation:
            await self.ops.resume(m, lambda op: self.ops.sql(project, op, m))
        inst = await asyncio.to_thread(read_instance, self.clients, project, instance)
        found = sql_record(inst)
        target = target_of(found)
        if not same(found, target):
            m.begin(found)
            op = await asyncio.to_thread(self._patch, project, instance, target)
            m.operation_started(op["name"])
            await self.ops.sql(project, op["name"], m)
            inst = await asyncio.to_thread(read_instance, self.clients, project, instance)
        return found, {**sql_record(inst), "state": inst.get("state", "")}

    @activity.defn(name=activity_names.EXPAND_SQL)
    async def expand_sql(self, p: ExpandSqlParams) -> StepOutcome:
        resource = instance_resource(p.project, p.instance)
        async with Mutation("expand Cloud SQL", resource) as m:
            found, after = await self._converge(
                m, p.project, p.instance,
                lambda cur: {"tier": p.tier, "databaseFlags": merge_flags(cur["databaseFlags"],
                                                                          p.flags)})
            state = after.pop("state")
            return m.outcome(current_before=found, after=after,
                             changed=m.checkpoint is not None,
                             detail=f"{resource}: tier {after['tier']}, flags "
                                    f"{flags_dict(after['databaseFlags'])} ({state})",
                             data={"state": state})

    @activity.defn(name=activity_names.RESTORE_SQL)
    async def restore_sql(self, inp: CompensationInput) -> StepOutcome:
        p = inp.params
        resource = instance_resource(p["project"], p["instance"])
        rec = inp.outcome.before
        async with Mutation("restore Cloud SQL", resource) as m:
            if not inp.outcome.changed or "tier" not in rec:
                return m.outcome(current_before={}, after={}, changed=False,
                                 detail=f"{inp.step_id} changed nothing; nothing to restore")
            # Exactly the recorded tier and flag list (flags added by the forward step go).
            target = {"tier": rec["tier"], "databaseFlags": list(rec["databaseFlags"])}
            found, after = await self._converge(m, p["project"], p["instance"],
                                                lambda _cur: target)
            state = after.pop("state")
            return m.outcome(current_before=found, after=after,
                             changed=m.checkpoint is not None,
                             detail=f"{resource}: restored tier {after['tier']} and "
                                    f"{len(after['databaseFlags'])} flag(s) ({state})",
                             data={"state": state})
