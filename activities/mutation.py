"""The conventions of ``runbook/activity_io.py`` for mutating activities, in one place.

``Mutation`` is used as ``async with Mutation(action, resource) as m:`` around an attempt:

- ``m.checkpoint`` starts as the checkpoint a previous attempt heartbeated (if any), so a
  retried attempt knows the state the *first* attempt found and the operation it started;
- ``m.begin(before)`` heartbeats the checkpoint *before* the mutation is issued, and
  ``m.operation_started(name)`` records the long-running operation right after;
- any failure inside the block leaves as a typed ``ApplicationError``; once a mutation may
  have been issued its first detail is the checkpoint, and a cancellation becomes a
  non-retryable ``Cancelled`` error carrying it (before that, cancellation stays plain).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import errors
from runbook.activity_io import MutationCheckpoint, StepOutcome

# Every change the worker makes to a cloud resource, at INFO (observability/logs.py adds
# the run's workflow id and run id). ``before``/``after`` are the step's outcome, which
# history records too: activities redact secrets from them before they leave.
log = logging.getLogger("runbook.mutations")


def resumed_checkpoint(resource: str) -> MutationCheckpoint | None:
    """The checkpoint an earlier attempt of this activity heartbeated for ``resource``."""
    details = activity.info().heartbeat_details
    if not details:
        return None
    first = details[0]
    # The worker's converter hands back the JSON dict; a test may pass the model itself.
    if isinstance(first, MutationCheckpoint):
        cp = first
    elif isinstance(first, dict) and "resource" in first and "before" in first:
        cp = MutationCheckpoint.model_validate(first)
    else:
        return None
    return cp if cp.resource == resource else None


class Mutation:
    def __init__(self, action: str, resource: str) -> None:
        self.action = action
        self.resource = resource
        self.checkpoint = resumed_checkpoint(resource)
        # True when an earlier attempt already recorded a checkpoint (and maybe mutated).
        self.resumed = self.checkpoint is not None

    async def __aenter__(self) -> "Mutation":
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        dump = self.dump()
        if isinstance(exc, asyncio.CancelledError):
            if dump is None:
                return False  # nothing issued: a plain cancellation
            raise ApplicationError(
                f"{self.action} {self.resource}: cancelled after the mutation was issued"
                + (f" (operation {self.checkpoint.operation})" if self.checkpoint
                   and self.checkpoint.operation else ""),
                dump, type=errors.CANCELLED, non_retryable=True) from exc
        if isinstance(exc, Exception) and self._refused_before_sent(exc):
            # The API refused the change itself: nothing was applied, so the failure must
            # not carry a checkpoint (the run would report, and try to undo, a change that
            # never happened). The next attempt starts from a clean slate.
            activity.heartbeat()
            mapped = errors.without_checkpoint(errors.to_application_error(
                exc, action=self.action, resource=self.resource))
            if mapped is exc:
                return False
            raise mapped from (exc.__cause__ if isinstance(exc, ApplicationError) else exc)
        if isinstance(exc, Exception):
            mapped = errors.to_application_error(
                exc, action=self.action, resource=self.resource, checkpoint=dump)
            if mapped is exc:
                # Already typed and carrying its checkpoint: let it propagate as is
                # ("raise exc from exc" would make a cause cycle the failure converter
                # cannot encode, and the failure would be lost).
                return False
            raise mapped from exc
        return False

    def _refused_before_sent(self, exc: Exception) -> bool:
        cp = self.checkpoint
        # A resumed checkpoint may be older than what its attempt did (heartbeats are
        # throttled): an earlier attempt may have sent the change. Keep it.
        if cp is None or self.resumed or cp.sent or cp.operation or cp.failed_operations:
            return False
        return 400 <= (errors.http_status_of(exc) or 0) < 500

    # -- checkpoint ---------------------------------------------------------------------

    def dump(self) -> dict[str, Any] | None:
        if self.checkpoint is None:
            return None
        # The later fields only when set: a plain checkpoint keeps its original shape.
        unset = {k for k in ("failed", "failed_operations", "sent", "operation_done")
                 if not getattr(self.checkpoint, k)}
        return self.checkpoint.model_dump(mode="json", exclude=unset)

    def heartbeat(self) -> None:
        dump = self.dump()
        if dump is None:
            activity.heartbeat()
        else:
            activity.heartbeat(dump)

    def begin(self, before: dict[str, Any]) -> None:
        """Record the state about to be replaced, before the mutation is sent.

        On a resumed attempt the first attempt's ``before`` is kept: it is what the
        compensation must restore.
        """
        if self.checkpoint is None:
            self.checkpoint = MutationCheckpoint(resource=self.resource, before=before)
        else:
            self.checkpoint = self.checkpoint.model_copy(update={"operation": None})
        self.heartbeat()

    def failing(self, verdict: str) -> None:
        """Record, before a self-restore is issued, that the change failed and why."""
        assert self.checkpoint is not None, "begin() must precede the mutation"
        self.checkpoint = self.checkpoint.model_copy(update={"failed": verdict, "operation": None})
        self.heartbeat()

    @property
    def failed_verdict(self) -> str | None:
        """The verdict an earlier attempt reached (see ``failing``), if any."""
        return self.checkpoint.failed if self.checkpoint else None

    def operation_failed(self, name: str) -> None:
        """Record that ``name`` ended in error, before the error leaves: the next attempt
        then sends the change under a fresh request id (see ``request_id``)."""
        if self.checkpoint is None or name in self.checkpoint.failed_operations:
            return
        self.checkpoint = self.checkpoint.model_copy(update={
            "failed_operations": [*self.checkpoint.failed_operations, name]})
        self.heartbeat()

    def request_id(self, *parts: Any) -> str:
        """The change's request id: stable across retries that re-send it after a crash
        (the API deduplicates), fresh after an operation of it failed (else the API hands
        back the failed operation again and the change can never succeed)."""
        failed = self.checkpoint.failed_operations if self.checkpoint else []
        return request_id(self.resource, *parts, *(["after-failed", *failed] if failed else []))

    def operation_finished(self) -> None:
        """The operation of ``operation_started`` ended without error: the change landed."""
        if self.checkpoint is None or self.checkpoint.operation_done:
            return
        self.checkpoint = self.checkpoint.model_copy(update={"operation_done": True})
        self.heartbeat()

    def sent(self) -> None:
        """A synchronous mutation call returned: the change is made."""
        self.operation_started(None)

    def operation_started(self, name: str | None) -> None:
        assert self.checkpoint is not None, "begin() must precede the mutation"
        self.checkpoint = self.checkpoint.model_copy(
            update={"operation": name, "sent": True, "operation_done": False})
        self.heartbeat()
        log.info("%s %s: change sent%s", self.action, self.resource,
                 f" (operation {name})" if name else "",
                 extra=self._log_fields(operation=name or ""))

    def _log_fields(self, **more: Any) -> dict[str, Any]:
        info = activity.info()
        return {"resource": self.resource, "step": info.activity_id, "attempt": info.attempt,
                "action": self.action, **more}

    @property
    def before(self) -> dict[str, Any] | None:
        return self.checkpoint.before if self.checkpoint else None

    @property
    def pending_operation(self) -> str | None:
        return self.checkpoint.operation if self.checkpoint else None

    # -- result -------------------------------------------------------------------------

    def outcome(self, *, current_before: dict[str, Any], after: dict[str, Any],
                detail: str = "", data: dict[str, Any] | None = None,
                changed: bool | None = None) -> StepOutcome:
        """The step's outcome; ``before`` is the first attempt's state when resumed."""
        before = self.before if self.before is not None else current_before
        if changed is None:
            changed = before != after
        if changed:
            log.info("%s %s: %s -> %s", self.action, self.resource, before, after,
                     extra=self._log_fields(before=before, after=after))
        return StepOutcome(changed=changed, resource=self.resource, before=before, after=after,
                           detail=detail, attempt=activity.info().attempt, data=data or {})


def read_outcome(resource: str, detail: str = "", data: dict[str, Any] | None = None,
                 ) -> StepOutcome:
    """Outcome of a read-only step (checks, probes)."""
    return StepOutcome(changed=False, resource=resource, detail=detail,
                       attempt=activity.info().attempt, data=data or {})


async def guarded(action: str, resource: str, coro: Any) -> Any:
    """Await a read-only coroutine, mapping any failure through the error map."""
    try:
        return await coro
    except ApplicationError:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise errors.to_application_error(exc, action=action, resource=resource) from exc


def request_id(*parts: Any) -> str:
    """A UUID stable across retries of one activity (compute ``requestId`` idempotency).

    It depends on the workflow run, the activity and ``parts`` (resource, target state,
    fingerprint), never on the attempt: a retried attempt that re-sends the same change
    gets the same id, so the API deduplicates it instead of applying it twice.
    """
    info = activity.info()
    key = "/".join([info.workflow_namespace, info.workflow_id or "", info.workflow_run_id or "",
                    info.activity_id, *(str(p) for p in parts)])
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))
