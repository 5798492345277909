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
import uuid
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import errors
from runbook.activity_io import MutationCheckpoint, StepOutcome


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

    # -- checkpoint ---------------------------------------------------------------------

    def dump(self) -> dict[str, Any] | None:
        return self.checkpoint.model_dump(mode="json") if self.checkpoint else None

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

    def operation_started(self, name: str | None) -> None:
        assert self.checkpoint is not None, "begin() must precede the mutation"
        self.checkpoint = self.checkpoint.model_copy(update={"operation": name})
        self.heartbeat()

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
