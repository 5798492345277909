"""Cloud Run v2: deploy a revision, route traffic, restore a service, delete old revisions.

The record a compensation needs is the service's ``template`` and ``traffic`` (as the
API's JSON) and which revisions were live. ``restore_service`` rolls back the way Cloud
Run documents it (GCP_FIDELITY A10): traffic goes back to the revisions that served
before, with a traffic-only update (no new revision, no cold start), while all of them
still exist. Only when one is gone is the old template redeployed; that rolls out as a
new revision (``template.revision`` is never sent: naming an existing one is refused).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import run_v2
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import errors
from activities.clients import GAPIC_TIMEOUT_S, GcpClients, short
from activities.mutation import Mutation
from activities.operations import Operations, poll
from activities.redaction import redact_template
from activities.run_restore import ServiceRestore
from activities.run_service import (
    failure_message,
    list_revisions,
    read_service,
    record,
    rollout,
    service_name,
    template_of,
)
from activities.run_template import apply_params, is_desired
from activities.run_traffic import LATEST, REVISION, shares, shown, traffic_of
from runbook import activity_names
from runbook.activity_io import (
    CompensationInput,
    DeleteOldRevisionsParams,
    DeployRevisionParams,
    RouteTrafficParams,
    StepOutcome,
)


def on_latest_ready(svc: dict[str, Any]) -> bool:
    """All traffic serves the latest ready revision (what LATEST must resolve to)."""
    serving = [t for t in svc.get("trafficStatuses", []) if t.get("percent", 0) > 0]
    return len(serving) == 1 and short(serving[0].get("revision", "")) == short(
        svc.get("latestReadyRevision", ""))


class CloudRunActivities(ServiceRestore):
    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients
        self.ops = Operations(clients)

    # -- helpers ------------------------------------------------------------------------

    async def _read(self, name: str) -> dict[str, Any]:
        return await asyncio.to_thread(read_service, self.clients, name)

    def _update(self, name: str, template: dict[str, Any] | None,
                traffic: list[dict[str, Any]] | None) -> Any:
        # Send the current service back with only template/traffic replaced: without an
        # update mask the API replaces the writable fields it receives, so everything else
        # (labels, scaling, ingress, ...) must travel unchanged. Output-only fields are
        # ignored by the API.
        client = self.clients.run_services()
        svc = client.get_service(name=name, retry=None, timeout=GAPIC_TIMEOUT_S)
        if template is not None:
            svc.template = run_v2.RevisionTemplate.from_json(json.dumps(template),
                                                             ignore_unknown_fields=True)
        if traffic is not None:
            svc.traffic = [run_v2.TrafficTarget.from_json(json.dumps(t),
                                                          ignore_unknown_fields=True)
                           for t in traffic]
        return client.update_service(service=svc, retry=None, timeout=GAPIC_TIMEOUT_S).operation

    async def _apply(self, m: Mutation, name: str, template: dict[str, Any] | None,
                     traffic: list[dict[str, Any]] | None) -> ApplicationError | None:
        """Issue one update and wait for its rollout; returns the operation's error."""
        op = await asyncio.to_thread(self._update, name, template, traffic)
        m.operation_started(op.name)
        try:
            if op.done and op.HasField("error"):
                m.operation_failed(op.name)
                raise errors.lro_error(op.error.code, op.error.message, action=m.action,
                                       resource=m.resource, checkpoint=m.dump())
            if op.done:
                m.operation_finished()
            else:
                await self.ops.run(op.name, m)
        except ApplicationError as err:
            return err
        return None

    async def _settle(self, m: Mutation, name: str) -> dict[str, Any]:
        """Poll the service until its latest spec is no longer reconciling."""
        return await poll(lambda: read_service(self.clients, name),
                          lambda s: rollout(s) != "reconciling", interval_s=self.ops.interval_s,
                          heartbeat=m.heartbeat, what=f"service {name} rollout")

    # -- activities ---------------------------------------------------------------------

    @staticmethod
    def _restored_before(m: Mutation, svc: dict[str, Any], p: DeployRevisionParams) -> bool:
        before = m.before
        return bool(m.resumed and before and "template" in before) \
            and not is_desired(svc.get("template", {}), p) \
            and redact_template(template_of(svc)) == before["template"] \
            and short(svc.get("latestCreatedRevision", "")) != before.get("latestCreatedRevision")

    @activity.defn(name=activity_names.DEPLOY_REVISION)
    async def deploy_revision(self, p: DeployRevisionParams) -> StepOutcome:
        name = service_name(p.project, p.region, p.service)
        async with Mutation("deploy revision", name) as m:
            if m.failed_verdict is not None:
                # An earlier attempt saw the new revision fail and began putting the old
                # service back: finish that restore and keep its verdict (re-deploying
                # here would apply the change twice and could flip the run's outcome).
                await self._finish_pending(m)
                raise await self._restored_after_failure(m, name, m.failed_verdict)
            op_error = None
            if m.pending_operation:
                try:
                    await self.ops.run(m.pending_operation, m)
                except ApplicationError as err:
                    op_error = err
            svc = await self._read(name)
            found = record(svc)
            if self._restored_before(m, svc, p):
                # The verdict's heartbeat may not have reached Temporal before the crash
                # (heartbeats are throttled), but the world shows it: a revision was created
                # and the old template is back. Deploying again would apply it twice.
                m.failing(f"deploy revision {name}: an earlier attempt's revision failed to "
                          "start and the service was put back (found when resuming)")
                raise await self._restored_after_failure(m, name, m.failed_verdict or "")
            if not is_desired(svc.get("template", {}), p):
                m.begin(found)
                op_error = await self._apply(m, name, apply_params(template_of(svc), p), None)
            elif m.checkpoint is None and rollout(svc) == "ready":
                latest = found["latestReadyRevision"]
                serving = shares(svc.get("trafficStatuses", []))
                # After a rollback by re-routing (A10) the template still holds this
                # configuration while traffic is pinned to older revisions: say so, since
                # only a traffic step puts the configuration back in service.
                note = "" if latest in serving else (
                    f"; {latest} receives no traffic (serving "
                    f"{shown(svc.get('trafficStatuses', []))})")
                return m.outcome(current_before=found, after=found, changed=False,
                                 detail=f"{name} already runs the requested configuration{note}",
                                 data={"revision": latest, "serving": serving})
            svc = await self._settle(m, name)
            if rollout(svc) == "failed":
                revision = short(svc.get("latestCreatedRevision", ""))
                reason = failure_message(svc)
                if m.checkpoint is None:
                    # Not our deployment: the service already failed with this config.
                    raise errors.step_failed(
                        f"deploy revision {name}: latest revision {revision} is not ready: "
                        f"{reason}")
                # The new revision failed to start: put the previous template and traffic
                # back now, so the service is not left pointing at a broken spec. The
                # verdict is checkpointed first, so a crash during the restore resumes it.
                m.failing(f"deploy revision {name}: revision {revision} failed to start: "
                          f"{reason}")
                raise await self._restored_after_failure(m, name, m.failed_verdict or "")
            if op_error is not None:
                raise op_error
            after = record(svc)
            return m.outcome(current_before=found, after=after, changed=m.checkpoint is not None,
                             detail=f"{name}: revision {after['latestReadyRevision']} ready",
                             data={"revision": after["latestReadyRevision"]})

    @activity.defn(name=activity_names.ROUTE_TRAFFIC_TO_LATEST)
    async def route_traffic_to_latest(self, p: RouteTrafficParams) -> StepOutcome:
        name = service_name(p.project, p.region, p.service)
        desired = [{"type": LATEST, "percent": 100}]
        async with Mutation("route traffic", name) as m:
            if m.pending_operation:
                await self.ops.resume(m, lambda op: self.ops.run(op, m))
            svc = await self._settle(m, name)
            found = record(svc)
            # After an update whose operation failed the spec may already say LATEST 100%
            # while traffic still follows the old split or revision: send it again.
            resend = bool(m.checkpoint and m.checkpoint.failed_operations) \
                and not on_latest_ready(svc)
            if traffic_of(svc) != desired or resend:
                m.begin(found)
                if traffic_of(svc) == desired:
                    # The same spec again is no change (no new generation, nothing is
                    # reconciled): pin the latest ready revision first, then LATEST.
                    latest = short(svc.get("latestReadyRevision", ""))
                    err = await self._apply(m, name, None, [
                        {"type": REVISION, "revision": latest, "percent": 100}])
                    if err is not None:
                        raise err
                err = await self._apply(m, name, None, desired)
                if err is not None:
                    raise err
                svc = await self._settle(m, name)
            after = record(svc)
            serving = [t for t in svc.get("trafficStatuses", []) if t.get("percent", 0) > 0]
            if traffic_of(svc) != desired or not on_latest_ready(svc):
                raise errors.app_error(
                    f"route traffic {name}: traffic is {svc.get('trafficStatuses')} after the "
                    "update, not 100% on one revision", errors.OPERATION_FAILED, m.dump(),
                    non_retryable=False)
            return m.outcome(current_before=found, after=after, changed=m.checkpoint is not None,
                             detail=f"{name}: 100% to {serving[0].get('revision')}",
                             data={"revision": serving[0].get("revision", "")})

    @activity.defn(name=activity_names.RESTORE_SERVICE)
    async def restore_service(self, inp: CompensationInput) -> StepOutcome:
        p = inp.params
        name = service_name(p["project"], p["region"], p["service"])
        rec = inp.outcome.before
        async with Mutation("restore service", name) as m:
            if not inp.outcome.changed or "template" not in rec:
                return m.outcome(current_before={}, after={}, changed=False,
                                 detail=f"{inp.step_id} changed nothing; nothing to restore")
            if m.pending_operation:
                await self.ops.resume(m, lambda op: self.ops.run(op, m))
            found = record(await self._read(name))
            changed, svc, how, text = await self._restore(m, name, rec)
            after = record(svc)
            return m.outcome(current_before=found, after=after,
                             changed=changed or m.resumed,
                             detail=f"{name}: {inp.step_id} rolled back: {text}",
                             data={"restored_by": how,
                                   "serving": shares(svc.get("trafficStatuses", []))})

    @activity.defn(name=activity_names.DELETE_OLD_REVISIONS)
    async def delete_old_revisions(self, p: DeleteOldRevisionsParams) -> StepOutcome:
        name = service_name(p.project, p.region, p.service)
        async with Mutation("delete old revisions", name) as m:
            if m.pending_operation:
                await self.ops.resume(m, lambda op: self.ops.run(op, m))
            svc = await self._settle(m, name)
            revisions = sorted(short(r["name"]) for r in
                               await asyncio.to_thread(list_revisions, self.clients, name))
            # Keep what serves (by percent, by name in the traffic spec, or by tag) and the
            # latest ready revision that LATEST resolves to.
            keep = {t["revision"] for t in svc.get("trafficStatuses", [])
                    if t.get("revision") and (t.get("percent", 0) > 0 or t.get("tag"))}
            keep |= {short(t["revision"]) for t in svc.get("traffic", []) if t.get("revision")}
            keep.add(short(svc.get("latestReadyRevision", "")))
            doomed = [r for r in revisions if r not in keep]
            found = {"revisions": revisions, "serving": sorted(keep & set(revisions))}
            deleted: list[str] = []
            if doomed:
                m.begin(found)
            for rev in doomed:
                try:
                    op = await asyncio.to_thread(self._delete_revision, f"{name}/revisions/{rev}")
                except gexc.NotFound:
                    continue  # already gone (an earlier attempt deleted it)
                m.operation_started(op.name)
                if op.done:
                    m.operation_finished()
                else:
                    await self.ops.run(op.name, m)
                deleted.append(rev)
            remaining = sorted(short(r["name"]) for r in
                               await asyncio.to_thread(list_revisions, self.clients, name))
            before = m.before or found
            return m.outcome(current_before=found, after={"revisions": remaining},
                             changed=before["revisions"] != remaining,
                             detail=f"{name}: deleted {len(before['revisions']) - len(remaining)} "
                                    f"old revision(s), kept {', '.join(remaining)}",
                             data={"deleted": sorted(set(before["revisions"]) - set(remaining)),
                                   "kept": remaining})

    def _delete_revision(self, name: str) -> Any:
        return self.clients.run_revisions().delete_revision(
            name=name, retry=None, timeout=GAPIC_TIMEOUT_S).operation
