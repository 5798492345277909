"""The run's notifications: every recipient's channels, retried by Temporal, failures seen.

Each (recipient, channel) pair is its own ``notify_channel`` activity with a RetryPolicy,
so a flaky Slack webhook is retried with backoff while PagerDuty is already paged. The
deliveries run in the background: a gate's deadline or a rollback never waits on a slow
channel. A channel that still fails is recorded on the escalation (status, Current
Details, CLI, audit) and logged at WARNING in the run's own log. ``drain`` waits for
every delivery before the run ends.

Runs recorded before the ``safety-1`` patch use ``legacy_notify`` (one activity, failures
swallowed), so their histories replay unchanged.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Callable

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.activity_calls import call, retry_policy
from workflows.step_errors import error_text, failed_attempts

with workflow.unsafe.imports_passed_through():
    from runbook import activity_names as act
    from runbook.activity_io import NotificationChannel, NotifyOutcome, NotifyParams
    from runbook.definition import RetrySpec
    from runbook.notifications import ChannelDelivery, ChannelFailure, ChannelNotice
    from runbook.status import Escalation, RunStatus

# Four tries, 5/10/20 s apart (each up to 30 s): long enough to ride out a webhook blip,
# short enough that a failure is on the status while the gate is still open.
CHANNEL_RETRY = RetrySpec(initial_interval_s=5, backoff_coefficient=2.0, maximum_interval_s=60,
                          maximum_attempts=4,
                          # ChannelSecretUnavailable is final or not by its cause (a 404 or
                          # a Secret Manager 5xx): the activity says which.
                          non_retryable_error_types=["ChannelNotConfigured", "ChannelRejected"])
# Levels that page: PagerDuty opens an incident for these and the gate's decision resolves it.
PAGING_LEVELS = ("escalation", "breach")


class Notifier:
    def __init__(self, status: RunStatus, channels_for: Callable[[str], list[str]],
                 publish: Callable[[], None]) -> None:
        self._status = status
        self._channels_for = channels_for
        self._publish = publish
        self._tasks: list[asyncio.Task] = []
        # gate id or "phase-N" -> (recipient, channel, delivery) paged about it, to resolve
        self._paged: dict[str, list[tuple[str, str, asyncio.Task]]] = {}

    def send(self, level: str, recipient: str, subject: str, body: str, *,
             phase: int | None = None, gate: str | None = None, **extra: Any) -> None:
        """Record the escalation now and deliver it on every channel of the recipient."""
        channels = self._channels_for(recipient)
        esc = Escalation(at=workflow.now(), level=level, recipient=recipient, subject=subject,
                         phase=phase, gate=gate, pending=list(channels))
        self._status.escalations.append(esc)
        level = "breach" if level == "hard_limit" else level  # a hard limit is a breach to a pager
        key = gate or (f"phase-{phase}" if phase else None)
        for channel in channels:
            notice = self._notice(level, recipient, channel, subject, body, phase, gate, **extra)
            task = asyncio.create_task(self._deliver(esc, notice))
            self._tasks.append(task)
            if key and level in PAGING_LEVELS:
                self._paged.setdefault(key, []).append((recipient, channel, task))
        self._publish()

    def resolve(self, key: str, decision: str) -> None:
        """A gate was decided (or a phase that breached its budget succeeded): resolve
        what was paged about it, under the same dedup key, after its trigger went out."""
        by_recipient: dict[str, dict[str, list[asyncio.Task]]] = {}
        for recipient, channel, task in self._paged.pop(key, []):
            by_recipient.setdefault(recipient, {}).setdefault(channel, []).append(task)
        gate = None if key.startswith("phase-") else key
        phase = int(key.removeprefix("phase-")) if gate is None else None
        for recipient, channels in by_recipient.items():
            subject = f"{'Gate ' + gate if gate else 'Phase ' + str(phase)} {decision}"
            esc = Escalation(at=workflow.now(), level="resolve", recipient=recipient,
                             subject=subject, gate=gate, phase=phase, pending=list(channels))
            self._status.escalations.append(esc)
            for channel, triggers in channels.items():
                notice = self._notice("resolve", recipient, channel, subject, subject, phase, gate)
                self._tasks.append(asyncio.create_task(self._deliver(esc, notice, after=triggers)))
        if by_recipient:
            self._publish()

    def resolve_at_end(self) -> None:
        """The run is ending: resolve every page about a gate decided (or abandoned by a
        cancel) and every phase that breached its budget but succeeded. A timed-out gate
        and a failed phase stay paged: those breaches need a human."""
        for key in list(self._paged):
            if key.startswith("phase-"):
                number = int(key.removeprefix("phase-"))
                if self._status.phases[number - 1].status == "SUCCEEDED":
                    self.resolve(key, "succeeded")
                continue
            record = next((g for g in self._status.gates if g.id == key), None)
            if record is not None and record.status != "TIMED_OUT":
                self.resolve(key, f"closed: run {self._status.state.value}")

    async def drain(self) -> None:
        await workflow.wait_condition(lambda: all(t.done() for t in self._tasks))

    def _notice(self, level: str, recipient: str, channel: str, subject: str, body: str,
                phase: int | None, gate: str | None, **extra: Any) -> ChannelNotice:
        """``extra``: ChannelNotice fields of an "approval" notice (digest, changes, buttons)."""
        wid = workflow.info().workflow_id
        record = next((g for g in self._status.gates if g.id == gate), None)
        deadline: datetime | None = record.timeout_at if record else None
        command = None
        if gate and level in ("reminder", "escalation", "approval"):
            digest = self._status.plan.digest if self._status.plan else None
            verified = self._status.identity is not None and self._status.identity.mode == "verified"
            command = (f"runbook approve {wid} --gate {gate}"
                       + ("" if verified else " --approver <you>")
                       + (f" --digest {digest}" if digest else ""))
        return ChannelNotice(
            run_id=wid, incident_id=self._status.incident_id, level=level, recipient=recipient,
            channel=channel, subject=subject, body=body, gate=gate, phase=phase,
            deadline=deadline, approve_command=command,
            dedup_key=f"{wid}/{gate or (f'phase-{phase}' if phase else 'run')}", **extra)

    async def _deliver(self, esc: Escalation, notice: ChannelNotice,
                       after: list[asyncio.Task] | None = None) -> None:
        if after:  # a resolve must not overtake its trigger's retries
            await workflow.wait_condition(lambda: all(t.done() for t in after))
        try:
            out: ChannelDelivery = await call(
                act.NOTIFY_CHANNEL, notice, ChannelDelivery,
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=timedelta(seconds=act.READ_HEARTBEAT_S),
                retry_policy=retry_policy(CHANNEL_RETRY),
                summary=f"{notice.level} to {notice.recipient} via {notice.channel}"[:200])
            if out.sent:
                esc.delivered.append(notice.channel)
        except (ActivityError, ApplicationError) as err:
            failure = ChannelFailure(recipient=notice.recipient, channel=notice.channel,
                                     error=error_text(err)[:500],
                                     attempts=failed_attempts(err, CHANNEL_RETRY))
            esc.failed.append(failure)
            workflow.logger.warning(
                "notification %r to %s via channel %s failed after %d attempt(s): %s",
                notice.subject, notice.recipient, notice.channel, failure.attempts, failure.error)
        finally:
            if notice.channel in esc.pending:
                esc.pending.remove(notice.channel)
            self._publish()


async def legacy_notify(status: RunStatus, channels: list[NotificationChannel], level: str,
                        recipient: str, subject: str, body: str, *, phase: int | None = None,
                        gate: str | None = None) -> None:
    """Before ``safety-1``: one ``notify`` activity, its failures swallowed."""
    try:
        out: NotifyOutcome = await call(
            act.NOTIFY,
            NotifyParams(run_id=workflow.info().workflow_id, incident_id=status.incident_id,
                         level=level if level != "hard_limit" else "breach", recipient=recipient,
                         subject=subject, body=body,
                         channels=channels or [NotificationChannel(kind="log")]),
            NotifyOutcome, start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=act.READ_HEARTBEAT_S),
            retry_policy=RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=10)),
            summary=f"Notify {recipient}: {subject}"[:200])
        delivered = out.delivered
    except (ActivityError, ApplicationError):
        delivered = []
    status.escalations.append(Escalation(
        at=workflow.now(), level=level, recipient=recipient, subject=subject,
        phase=phase, gate=gate, delivered=delivered))
