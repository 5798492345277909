"""What each channel kind receives for one ``ChannelNotice``: pure functions, no I/O.

- Slack incoming webhook: Block Kit built with ``slack_sdk.models.blocks``, whose
  ``to_dict()`` enforces Slack's limits; texts are clipped to those limits first so a
  long body shortens instead of failing the notification. An "approval" notice lists
  the plan rows the gate releases and, when the run takes verified approvals, carries
  Approve/Reject buttons the approval service answers (approval/slack_interactions.py).
  Buttons need a webhook that belongs to a Slack *app* with Interactivity on: a legacy
  custom-integration webhook "does not have access to interactive messages features"
  (https://docs.slack.dev/legacy/legacy-custom-integrations/legacy-custom-integrations-incoming-webhooks,
  "Additional limitations"); an app's webhook carries Block Kit actions like any other
  block, and Slack sends the clicks to the app's Interactivity Request URL.
- PagerDuty Events API v2: ``trigger`` on escalation and breach, ``resolve`` when the
  gate is decided, nothing for reminders, outcomes and approval requests (they must
  not page anyone: a gate opening is not yet late).
- Generic webhook: the notice's own fields as JSON.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from slack_sdk.models.blocks import (ActionsBlock, Block, ButtonElement, ConfirmObject,
                                     ContextBlock, HeaderBlock, MarkdownTextObject,
                                     PlainTextObject, SectionBlock)

from runbook.notifications import APPROVE_ACTION_ID, REJECT_ACTION_ID, ChannelNotice

# Slack Block Kit limits (also enforced by slack_sdk where it checks them).
SLACK_HEADER_MAX = 150
SLACK_SECTION_TEXT_MAX = 3000
SLACK_FIELD_MAX = 2000
SLACK_FIELDS_MAX = 10
SLACK_BUTTON_VALUE_MAX = 2000
SLACK_CONFIRM_TEXT_MAX = 300
# The buttons' action ids: approval/slack_interactions.py dispatches on them.
# A digest is shown this long (the full one is in the button value and the CLI command).
DIGEST_SHOWN = 16
# One plan row at most this long, so a single huge value cannot hide the others.
CHANGE_ROW_MAX = 300
# PagerDuty Events API v2 limits.
PAGERDUTY_SUMMARY_MAX = 1024
PAGERDUTY_DEDUP_KEY_MAX = 255
# Custom details are free-form; keep the body well inside the 512 KB event limit.
PAGERDUTY_BODY_MAX = 8000

# What each level does to the PagerDuty alert of its dedup key; other levels page nobody.
PAGERDUTY_ACTION = {"escalation": "trigger", "breach": "trigger", "resolve": "resolve"}
# Levels that open (or update) a PagerDuty alert, with the alert's severity.
PAGERDUTY_SEVERITY = {"escalation": "warning", "breach": "critical"}
PAGERDUTY_CLASS = {"escalation": "approval escalation", "breach": "deadline breach"}
PAGERDUTY_SKIPPED = "pagerduty pages only on escalation and breach"

_LEVEL_LABEL = {"reminder": "Reminder", "escalation": "Escalation", "breach": "Deadline breach",
                "outcome": "Outcome", "resolve": "Resolved", "approval": "Approval needed"}
_LEVEL_ICON = {"reminder": ":alarm_clock:", "escalation": ":arrow_double_up:",
               "breach": ":rotating_light:", "outcome": ":information_source:",
               "resolve": ":white_check_mark:", "approval": ":raised_hand:"}


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def dedup_key(notice: ChannelNotice) -> str:
    """The notice's key, else one per run and gate: a resolve must reuse the trigger's."""
    key = notice.dedup_key or f"{notice.run_id}/{notice.gate or 'run'}"
    if len(key) <= PAGERDUTY_DEDUP_KEY_MAX:
        return key
    # Too long for PagerDuty: keep it stable and distinct rather than cut it.
    return key[:200] + "#" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _escape(text: str) -> str:
    # Slack mrkdwn control characters (https://api.slack.com/reference/surfaces/formatting).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _relative(deadline: datetime, now: datetime) -> str:
    seconds = int((deadline - now).total_seconds())
    minutes = abs(seconds) // 60
    span = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
    return f"in {span}" if seconds >= 0 else f"{span} ago"


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def deadline_text(deadline: datetime, now: datetime) -> str:
    """ISO time, Slack's reader-local rendering (UTC as fallback) and time left."""
    deadline, now = _aware(deadline), _aware(now)
    utc = deadline.astimezone(timezone.utc)
    fallback = utc.strftime("%a %d %b %H:%M UTC")
    local = f"<!date^{int(utc.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"
    return f"{utc.isoformat()}\n{local} ({_relative(deadline, now)})"


def slack_message(notice: ChannelNotice, now: datetime) -> dict[str, Any]:
    """An incoming-webhook payload: ``text`` (notifications, fallback) and ``blocks``."""
    label = _LEVEL_LABEL[notice.level]
    text = clip(f"{label}: {notice.subject} (incident {notice.incident_id})", 3000)
    facts = [("Incident", notice.incident_id), ("Level", label), ("Recipient", notice.recipient)]
    if notice.gate:
        facts.append(("Gate", f"`{notice.gate}`"))
    if notice.phase is not None:
        facts.append(("Phase", str(notice.phase)))
    if notice.deadline is not None and notice.level != "resolve":
        facts.append(("Deadline", deadline_text(notice.deadline, now)))
    if notice.plan_digest:
        facts.append(("Plan digest", f"`{clip(notice.plan_digest, DIGEST_SHOWN)}`"))
    fields = [MarkdownTextObject(text=clip(f"*{name}*\n{_escape_fact(name, value)}",
                                           SLACK_FIELD_MAX))
              for name, value in facts[:SLACK_FIELDS_MAX]]
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(
            text=clip(f"{_LEVEL_ICON[notice.level]} {label}: {notice.subject}", SLACK_HEADER_MAX),
            emoji=True)),
        SectionBlock(fields=fields),
    ]
    if notice.level == "resolve":
        decided = f"gate `{_escape(notice.gate)}`" if notice.gate else "the run"
        blocks.append(SectionBlock(text=MarkdownTextObject(
            text=f":white_check_mark: The {decided} was decided: no action is needed any more.")))
    if notice.body:
        blocks.append(SectionBlock(text=MarkdownTextObject(
            text=clip(_escape(notice.body), SLACK_SECTION_TEXT_MAX))))
    if notice.level == "approval":
        blocks += _approval_blocks(notice)
    if notice.approve_command and notice.level != "resolve":
        fence = "```"
        room = SLACK_SECTION_TEXT_MAX - len("*Approve with*\n") - 2 * len(fence)
        blocks.append(SectionBlock(text=MarkdownTextObject(
            text=f"*Approve with*\n{fence}{clip(_escape(notice.approve_command), room)}{fence}")))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(
        text=clip(f"Run `{_escape(notice.run_id)}` · sent to {_escape(notice.recipient)}",
                  SLACK_SECTION_TEXT_MAX))]))
    return {"text": _escape(text), "blocks": [b.to_dict() for b in blocks]}


def changes_text(changes: list[str], limit: int = SLACK_SECTION_TEXT_MAX) -> str:
    """"What will change": one escaped bullet per plan row, as many as fit in ``limit``,
    then how many were left out (a long row is clipped rather than dropped)."""
    text = "*What will change*"
    for shown, row in enumerate(changes):
        line = "\n• " + clip(_escape(row), CHANGE_ROW_MAX)
        left = len(changes) - shown - 1
        more = f"\n… and {left} more" if left else ""
        if len(text) + len(line) + len(more) > limit:
            # The previous row reserved room for exactly this tail.
            return text + f"\n… and {len(changes) - shown} more"
        text += line
    return text


def button_value(notice: ChannelNotice) -> str:
    """What the buttons carry back: the run, the gate and the digest they approve."""
    return json.dumps({"wid": notice.run_id, "gate": notice.gate, "digest": notice.plan_digest},
                      separators=(",", ":"))


def approval_block_id(notice: ChannelNotice) -> str:
    # Stable per run and gate (a re-sent notice replaces like with like), within 255.
    key = f"{notice.run_id}/{notice.gate or 'run'}".encode()
    return "runbook-approval-" + hashlib.sha256(key).hexdigest()[:32]


def _approval_blocks(notice: ChannelNotice) -> list[Block]:
    blocks: list[Block] = []
    if notice.changes:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=changes_text(notice.changes))))
    if not notice.buttons:
        return blocks
    value = button_value(notice)
    if not (notice.gate and notice.plan_digest) or len(value) > SLACK_BUTTON_VALUE_MAX:
        # Buttons that could not name the gate and plan would approve nothing: say so
        # instead of failing the notice; the CLI command below still works.
        blocks.append(SectionBlock(text=MarkdownTextObject(
            text="_Buttons unavailable for this gate (no gate, no plan digest, or ids too "
                 "long for a Slack button): approve with the command below._")))
        return blocks
    gate = _escape(notice.gate)
    confirm = ConfirmObject(
        title="Reject this gate?",
        text=clip(f"Reject gate `{gate}` of run `{_escape(notice.run_id)}`? The changes "
                  "this gate releases will not be applied.", SLACK_CONFIRM_TEXT_MAX),
        confirm="Reject", deny="Cancel", style="danger")
    blocks.append(ActionsBlock(block_id=approval_block_id(notice), elements=[
        ButtonElement(text=PlainTextObject(text="Approve", emoji=False),
                      action_id=APPROVE_ACTION_ID, value=value, style="primary"),
        ButtonElement(text=PlainTextObject(text="Reject", emoji=False),
                      action_id=REJECT_ACTION_ID, value=value, style="danger", confirm=confirm),
    ]))
    return blocks


def _escape_fact(name: str, value: str) -> str:
    # The deadline carries Slack's <!date^...> markup on purpose; everything else is text.
    return value if name == "Deadline" else _escape(value)


def pagerduty_event(notice: ChannelNotice, routing_key: str) -> dict[str, Any] | None:
    """The Events API v2 event for ``notice``, or None when this level pages nobody."""
    action = PAGERDUTY_ACTION.get(notice.level)
    if action is None:
        return None
    key = dedup_key(notice)
    if action == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    details: dict[str, Any] = {"incident": notice.incident_id, "run": notice.run_id,
                               "level": notice.level, "recipient": notice.recipient,
                               "gate": notice.gate, "phase": notice.phase,
                               "deadline": notice.deadline.isoformat() if notice.deadline else None,
                               "approve_command": notice.approve_command,
                               "body": clip(notice.body, PAGERDUTY_BODY_MAX)}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": clip(f"[incident {notice.incident_id}] {notice.subject}",
                            PAGERDUTY_SUMMARY_MAX),
            "source": notice.run_id,
            "severity": PAGERDUTY_SEVERITY[notice.level],
            "component": notice.gate or "run",
            "group": f"incident-{notice.incident_id}",
            "class": PAGERDUTY_CLASS[notice.level],
            "custom_details": {k: v for k, v in details.items() if v is not None},
        },
    }


def webhook_message(notice: ChannelNotice) -> dict[str, Any]:
    """The notice as JSON (it holds no secret), tagged so receivers can route on it."""
    return {"kind": "runbook.notification", **notice.model_dump(mode="json")}
