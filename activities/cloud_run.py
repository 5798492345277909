"""Cloud Run v2: deploy a revision, route traffic, restore a service, delete old revisions.

The record a compensation needs is the service's ``template`` and ``traffic`` (as the
API's JSON); ``restore_service`` sends exactly those back. ``template.revision`` (an
explicit revision name) is never sent: naming an existing revision is refused, and a
restored template always rolls out as a new revision, as on real Cloud Run.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import run_v2
from google.protobuf import json_format
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import errors
from activities.clients import GAPIC_TIMEOUT_S, GcpClients
from activities.mutation import Mutation
from activities.redaction import redact_template, unredact_template
from activities.operations import Operations, poll
from runbook import activity_names
from runbook.activity_io import (
    CompensationInput,
    DeleteOldRevisionsParams,
    DeployRevisionParams,
    RouteTrafficParams,
    StepOutcome,
)

LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
SUCCEEDED = "CONDITION_SUCCEEDED"
FAILED = "CONDITION_FAILED"
DEFAULT_MAX_INSTANCES = 100
DEFAULT_TIMEOUT_S = 300


def service_name(project: str, region: str, service: str) -> str:
    return f"projects/{project}/locations/{region}/services/{service}"


def short(name: str) -> str:
    return name.rsplit("/", 1)[-1] if name else ""


def to_json(message: Any) -> dict[str, Any]:
    """A proto-plus message as the API's JSON (camelCase, enum names, no defaults)."""
    return json_format.MessageToDict(type(message).pb(message))


def read_service(clients: GcpClients, name: str) -> dict[str, Any]:
    svc = clients.run_services().get_service(name=name, retry=None, timeout=GAPIC_TIMEOUT_S)
    return to_json(svc)


def list_revisions(clients: GcpClients, service: str) -> list[dict[str, Any]]:
    pager = clients.run_revisions().list_revisions(parent=service, retry=None,
                                                   timeout=GAPIC_TIMEOUT_S)
    return [to_json(r) for r in pager]


def template_of(svc: dict[str, Any]) -> dict[str, Any]:
    tpl = copy.deepcopy(svc.get("template", {}))
    tpl.pop("revision", None)
    return tpl


def traffic_of(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(t) for t in svc.get("traffic", [])] or [{"type": LATEST, "percent": 100}]


def record(svc: dict[str, Any]) -> dict[str, Any]:
    """What restore_service needs (template, traffic) plus which revisions were live."""
    return {
        # Credential-like env values only as fingerprints: this record enters history.
        "template": redact_template(template_of(svc)),
        "traffic": traffic_of(svc),
        "latestReadyRevision": short(svc.get("latestReadyRevision", "")),
        "latestCreatedRevision": short(svc.get("latestCreatedRevision", "")),
    }


def rollout(svc: dict[str, Any]) -> str:
    """``ready`` | ``reconciling`` | ``failed`` for the service's latest spec."""
    cond = svc.get("terminalCondition", {})
    if svc.get("reconciling") or cond.get("state") == "CONDITION_RECONCILING":
        return "reconciling"
    if cond.get("state") == FAILED or (
            svc.get("latestCreatedRevision") != svc.get("latestReadyRevision")):
        return "failed"
    return "ready" if cond.get("state") == SUCCEEDED else "reconciling"


def _container(tpl: dict[str, Any]) -> dict[str, Any]:
    containers = tpl.setdefault("containers", [{}])
    return containers[0]


def config_view(tpl: dict[str, Any]) -> dict[str, Any]:
    """The knobs deploy_revision sets, read from a template (with Cloud Run defaults)."""
    c = (tpl.get("containers") or [{}])[0]
    limits = c.get("resources", {}).get("limits", {})
    scaling = tpl.get("scaling", {})
    timeout = str(tpl.get("timeout", f"{DEFAULT_TIMEOUT_S}s"))
    return {
        "env": {e["name"]: e.get("value", "") for e in c.get("env", [])
                if "name" in e and "valueSource" not in e},  # secret refs are not values
        "cpu": limits.get("cpu", ""),
        "memory": limits.get("memory", ""),
        "min_instances": int(scaling.get("minInstanceCount", 0)),
        "max_instances": int(scaling.get("maxInstanceCount", DEFAULT_MAX_INSTANCES)),
        "timeout_s": int(float(timeout.rstrip("s"))),
    }


def _wanted(p: DeployRevisionParams) -> dict[str, Any]:
    fields = ("cpu", "memory", "min_instances", "max_instances", "timeout_s")
    return {f: getattr(p, f) for f in fields if getattr(p, f) is not None}


def is_desired(tpl: dict[str, Any], p: DeployRevisionParams) -> bool:
    view = config_view(tpl)
    if any(view["env"].get(k) != v for k, v in p.env.items()):
        return False
    return all(view[f] == v for f, v in _wanted(p).items())


def apply_params(tpl: dict[str, Any], p: DeployRevisionParams) -> dict[str, Any]:
    """A copy of ``tpl`` with the requested env, resources, scaling and timeout."""
    tpl = copy.deepcopy(tpl)
    c = _container(tpl)
    env = c.setdefault("env", [])
    for key, value in p.env.items():
        entry = next((e for e in env if e.get("name") == key), None)
        if entry is None:
            env.append({"name": key, "value": value})
        else:
            entry.pop("valueSource", None)  # a plain value replaces a secret reference
            entry["value"] = value
    if p.cpu is not None or p.memory is not None:
        if "resources" not in c:
            # A resources block without cpuIdle would switch CPU to always-allocated
            # (GCP_FACTS §1); keep Cloud Run's default of request-time CPU.
            c["resources"] = {"cpuIdle": True}
        limits = c["resources"].setdefault("limits", {})
        if p.cpu is not None:
            limits["cpu"] = p.cpu
        if p.memory is not None:
            limits["memory"] = p.memory
    if p.min_instances is not None or p.max_instances is not None:
        scaling = tpl.setdefault("scaling", {})
        if p.min_instances is not None:
            scaling["minInstanceCount"] = p.min_instances
        if p.max_instances is not None:
            scaling["maxInstanceCount"] = p.max_instances
    if p.timeout_s is not None:
        tpl["timeout"] = f"{p.timeout_s}s"
    return tpl


def _failure_message(svc: dict[str, Any]) -> str:
    cond = svc.get("terminalCondition", {})
    return cond.get("message") or cond.get("reason") or "the revision did not become ready"


class CloudRunActivities:
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
                raise errors.lro_error(op.error.code, op.error.message, action=m.action,
                                       resource=m.resource, checkpoint=m.dump())
            if not op.done:
                await self.ops.run(op.name, m)
        except ApplicationError as err:
            return err
        return None

    async def _settle(self, m: Mutation, name: str) -> dict[str, Any]:
        """Poll the service until its latest spec is no longer reconciling."""
        return await poll(lambda: read_service(self.clients, name),
                          lambda s: rollout(s) != "reconciling", interval_s=self.ops.interval_s,
                          heartbeat=m.heartbeat, what=f"service {name} rollout")

    async def _restore(self, m: Mutation, name: str, rec: dict[str, Any]) -> tuple[bool, dict]:
        """Put ``rec``'s template and traffic back; (changed, service after)."""
        svc = await self._settle(m, name)
        current = redact_template(template_of(svc))
        if current == rec["template"] and traffic_of(svc) == rec["traffic"] \
                and rollout(svc) == "ready":
            return False, svc
        if m.checkpoint is None:
            m.begin(record(svc))
        # Traffic pinned to named revisions is restored in the same update as the
        # template, so the service never serves a mix of old and new.
        template = None
        if current != rec["template"]:
            template = unredact_template(rec["template"],
                                         [template_of(svc), *await self._revisions_of(name, rec)])
        err = await self._apply(m, name, template, rec["traffic"])
        svc = await self._settle(m, name)
        if err is not None or rollout(svc) != "ready":
            raise err or errors.app_error(
                f"{m.action} {name}: restored revision did not become ready: "
                f"{_failure_message(svc)}", errors.OPERATION_FAILED, m.dump(),
                non_retryable=False)
        return True, svc

    async def _revisions_of(self, name: str, rec: dict[str, Any]) -> list[dict[str, Any]]:
        """The recorded revisions (immutable: they keep the values a record leaves out)."""
        found = []
        for rev in {rec.get("latestReadyRevision"), rec.get("latestCreatedRevision")} - {"", None}:
            try:
                found.append(await asyncio.to_thread(
                    lambda r=rev: to_json(self.clients.run_revisions().get_revision(
                        name=f"{name}/revisions/{r}", retry=None, timeout=GAPIC_TIMEOUT_S))))
            except gexc.NotFound:
                continue  # deleted: the live template may still hold the value
        return found

    # -- activities ---------------------------------------------------------------------

    @activity.defn(name=activity_names.DEPLOY_REVISION)
    async def deploy_revision(self, p: DeployRevisionParams) -> StepOutcome:
        name = service_name(p.project, p.region, p.service)
        async with Mutation("deploy revision", name) as m:
            op_error = None
            if m.pending_operation:
                try:
                    await self.ops.run(m.pending_operation, m)
                except ApplicationError as err:
                    op_error = err
            svc = await self._read(name)
            found = record(svc)
            if not is_desired(svc.get("template", {}), p):
                m.begin(found)
                op_error = await self._apply(m, name, apply_params(template_of(svc), p), None)
            elif m.checkpoint is None and rollout(svc) == "ready":
                return m.outcome(current_before=found, after=found, changed=False,
                                 detail=f"{name} already runs the requested configuration",
                                 data={"revision": found["latestReadyRevision"]})
            svc = await self._settle(m, name)
            if rollout(svc) == "failed":
                revision = short(svc.get("latestCreatedRevision", ""))
                reason = _failure_message(svc)
                if m.checkpoint is None:
                    # Not our deployment: the service already failed with this config.
                    raise errors.step_failed(
                        f"deploy revision {name}: latest revision {revision} is not ready: "
                        f"{reason}")
                # The new revision failed to start: put the previous template and traffic
                # back now, so the service is not left pointing at a broken spec.
                await self._restore(m, name, m.checkpoint.before)
                raise errors.app_error(
                    f"deploy revision {name}: revision {revision} failed to start: {reason}; "
                    "previous template and traffic restored", errors.OPERATION_FAILED,
                    m.dump(), non_retryable=True)
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
            if traffic_of(svc) != desired:
                m.begin(found)
                err = await self._apply(m, name, None, desired)
                if err is not None:
                    raise err
                svc = await self._settle(m, name)
            after = record(svc)
            serving = [t for t in svc.get("trafficStatuses", []) if t.get("percent", 0) > 0]
            if traffic_of(svc) != desired or len(serving) != 1:
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
            changed, svc = await self._restore(m, name, rec)
            after = record(svc)
            return m.outcome(current_before=found, after=after,
                             changed=changed or m.resumed,
                             detail=f"{name}: template and traffic of {inp.step_id} restored")

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
                if not op.done:
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
