"""Putting a Cloud Run service back as a record says (the compensation's core, and a
failed deploy's self-restore).

GCP_FIDELITY A10: traffic goes back to the revisions that served, with a traffic-only
update (no new revision, no cold start), while all of them still exist. Only when one is
gone is the old template redeployed; that rolls out as a new revision. If that revision
fails to start, re-sending the same spec can never help (it makes no new revision): the
undo judges the world as it is, restored when only recorded revisions serve.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.api_core import exceptions as gexc
from temporalio.exceptions import ApplicationError

from activities import errors
from activities.clients import GAPIC_TIMEOUT_S, GcpClients, short
from activities.mutation import Mutation
from activities.operations import Operations
from activities.redaction import redact_template, unredact_template
from activities.run_service import (
    failure_message,
    list_revisions,
    record,
    rollout,
    template_of,
    to_json,
)
from activities.run_traffic import (
    pinned_traffic,
    redeploy_traffic,
    routed_as,
    shares,
    shown,
    traffic_of,
)


class ServiceRestore:
    """A mixin of CloudRunActivities: ``_apply`` issues one update, ``_settle`` waits."""

    clients: GcpClients
    ops: Operations

    async def _apply(self, m: Mutation, name: str, template: dict[str, Any] | None,
                     traffic: list[dict[str, Any]] | None) -> ApplicationError | None:
        raise NotImplementedError

    async def _settle(self, m: Mutation, name: str) -> dict[str, Any]:
        raise NotImplementedError

    async def _restore(self, m: Mutation, name: str,
                       rec: dict[str, Any]) -> tuple[bool, dict[str, Any], str, str]:
        """Put ``rec``'s serving state back: (changed, service after, "traffic" |
        "redeploy", what was done)."""
        svc = await self._settle(m, name)
        wanted = pinned_traffic(rec)
        template_kept = redact_template(template_of(svc)) != rec["template"]
        if not template_kept and traffic_of(svc) == rec["traffic"] and rollout(svc) == "ready" \
                and short(svc.get("latestReadyRevision", "")) == rec.get("latestReadyRevision"):
            return False, svc, "traffic", "template and traffic already as recorded"
        if wanted is not None and routed_as(svc, wanted):
            return False, svc, "traffic", self._routed_text(wanted, template_kept, False)
        existing = {short(r["name"]) for r in
                    await asyncio.to_thread(list_revisions, self.clients, name)}
        if wanted is not None and {t["revision"] for t in wanted} <= existing:
            if m.checkpoint is None:
                m.begin(record(svc))
            # Traffic only: the template stays as it is, so no revision is created.
            err = await self._apply(m, name, None, wanted)
            svc = await self._settle(m, name)
            if err is not None or not routed_as(svc, wanted):
                raise err or errors.app_error(
                    f"{m.action} {name}: traffic is {svc.get('trafficStatuses')} after routing "
                    f"it back, not {shown(wanted)}", errors.OPERATION_FAILED, m.dump(),
                    non_retryable=False)
            return True, svc, "traffic", self._routed_text(wanted, template_kept, True)
        changed, svc = await self._redeploy(m, name, rec, existing, svc)
        gone = sorted({t["revision"] for t in wanted or []} - existing)
        why = (f"recorded revision(s) {', '.join(gone)} deleted" if wanted is not None
               else "the record names no revision to route to")
        if rollout(svc) == "failed":  # judged restored: only recorded revisions serve
            text = (f"old template redeployed ({why}), but its revision "
                    f"{short(svc.get('latestCreatedRevision', ''))} failed to start; traffic "
                    f"stays on {shown(svc.get('trafficStatuses', []))}, revisions of the record")
        else:
            text = (f"old template {'redeployed' if changed else 'already redeployed'} as a "
                    f"new revision {short(svc.get('latestReadyRevision', ''))} ({why}); "
                    f"traffic {shown(svc.get('trafficStatuses', []))}")
        return changed, svc, "redeploy", text

    async def _finish_pending(self, m: Mutation) -> None:
        """Wait out the operation an earlier attempt started; its own failure does not
        matter here: the caller reads the service and judges the state it left."""
        if m.pending_operation:
            try:
                await self.ops.run(m.pending_operation, m)
            except ApplicationError:
                pass

    async def _restored_after_failure(self, m: Mutation, name: str,
                                      verdict: str) -> ApplicationError:
        """Restore ``m.before`` after a failed change; the error that ends the attempt."""
        _, _, how, text = await self._restore(m, name, m.checkpoint.before)
        return errors.app_error(f"{verdict}; rolled back: {text}", errors.OPERATION_FAILED,
                                m.dump(), {"restored_by": how}, non_retryable=True)

    @staticmethod
    def _routed_text(wanted: list[dict[str, Any]], template_kept: bool, changed: bool) -> str:
        text = (f"traffic routed back to {shown(wanted)} (no new revision)" if changed
                else f"traffic already on {shown(wanted)} (no new revision)")
        if template_kept:
            text += "; template still holds the step's configuration"
        return text

    async def _redeploy(self, m: Mutation, name: str, rec: dict[str, Any], existing: set[str],
                        svc: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """The fallback: send the recorded template back (a new revision) with traffic
        that names only revisions that still exist. ``svc``: the settled service."""
        traffic = redeploy_traffic(rec, existing)
        current = redact_template(template_of(svc))
        if current == rec["template"] and traffic_of(svc) == traffic:
            if rollout(svc) == "ready":
                return False, svc
            # The recorded template and traffic are already sent: sending them again is
            # no change (no new revision), so it could never make the rollout succeed.
            return False, self._judge_failed_restore(m, name, rec, svc)
        if m.checkpoint is None:
            m.begin(record(svc))
        # Traffic is set in the same update as the template, so the service never
        # serves a mix of old and new.
        template = None
        if current != rec["template"]:
            template = unredact_template(rec["template"],
                                         [template_of(svc), *await self._revisions_of(name, rec)])
        err = await self._apply(m, name, template, traffic)
        svc = await self._settle(m, name)
        if rollout(svc) == "failed" and redact_template(template_of(svc)) == rec["template"]:
            return True, self._judge_failed_restore(m, name, rec, svc)
        if err is not None or rollout(svc) != "ready":
            raise err or errors.app_error(
                f"{m.action} {name}: restored revision did not become ready: "
                f"{failure_message(svc)}", errors.OPERATION_FAILED, m.dump(),
                non_retryable=False)
        return True, svc

    @staticmethod
    def _judge_failed_restore(m: Mutation, name: str, rec: dict[str, Any],
                              svc: dict[str, Any]) -> dict[str, Any]:
        """The service holds the recorded template and traffic, but the revision that
        template rolled out as failed to start. If what serves is only revisions the record
        names, the world is restored (the failed revision serves nothing): return ``svc``.
        Otherwise no retry can help (the same spec makes no new revision): fail for good."""
        recorded = {t["revision"] for t in pinned_traffic(rec) or []}
        recorded |= {rec.get("latestReadyRevision")} - {"", None}
        serving = shares(svc.get("trafficStatuses", []))
        failed = short(svc.get("latestCreatedRevision", ""))
        if serving and set(serving) <= recorded:
            return svc
        raise errors.app_error(
            f"{m.action} {name}: the recorded template was redeployed as revision {failed}, "
            f"which failed to start ({failure_message(svc)}); the service serves "
            f"{shown(svc.get('trafficStatuses', []))}, not a revision of the record. Fix what "
            "stops the container from starting, then run `runbook rollback` again",
            errors.OPERATION_FAILED, m.dump(), non_retryable=True)

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
