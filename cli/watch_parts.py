"""What the live view (cli/watch.py) knows besides the status, and its one-line pieces.

``PendingStep``: a step's activity in flight, from the workflow's pending activities
(``describe()``): the attempt the server is on and the operation the step's last heartbeat
named, which the status query cannot know. Every line helper returns a ``Text`` that is
exactly one terminal line: no wrapping, cut with an ellipsis, so the view can count its
height and never folds a value in the middle of a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from rich.cells import cell_len
from rich.text import Text
from temporalio.client import WorkflowExecutionDescription
from temporalio.contrib.pydantic import pydantic_data_converter

from cli.render import countdown, utc
from runbook.activity_io import checkpoint_in


@dataclass(frozen=True)
class PendingStep:
    step_id: str  # the activity id: a step's id, ``undo-<step>``, or a soak sample's number
    attempt: int
    maximum_attempts: int  # 0 = unlimited
    operation: str | None = None
    last_failure: str | None = None
    activity_type: str = ""

    @property
    def attempts_text(self) -> str:
        return f"attempt {self.attempt}/{self.maximum_attempts or '∞'}"


def _decoded_details(desc: WorkflowExecutionDescription, payloads: Iterable[Any]) -> list[Any]:
    converter = getattr(desc, "data_converter", None) or pydantic_data_converter
    try:
        return list(converter.payload_converter.from_payloads(list(payloads)))
    except Exception:  # a detail of another shape or encoding: the view just lacks the operation
        return []


def pending_steps(desc: WorkflowExecutionDescription) -> list[PendingStep]:
    """The activities in flight, with the operation from their MutationCheckpoint heartbeat."""
    steps = []
    for pa in desc.raw_description.pending_activities:
        operation = None
        if pa.HasField("heartbeat_details") and pa.heartbeat_details.payloads:
            checkpoint = checkpoint_in(_decoded_details(desc, pa.heartbeat_details.payloads))
            operation = checkpoint.operation if checkpoint else None
        failure = pa.last_failure.message if pa.HasField("last_failure") else ""
        steps.append(PendingStep(step_id=pa.activity_id, attempt=pa.attempt,
                                 maximum_attempts=pa.maximum_attempts, operation=operation,
                                 last_failure=failure or None,
                                 activity_type=pa.activity_type.name))
    return steps


# --- one-line pieces ---------------------------------------------------------------------


def seconds_since(dt: datetime | None, now: datetime) -> float | None:
    return max(0.0, (now - utc(dt)).total_seconds()) if dt else None


def dur(seconds: float | None) -> str:
    """Compact: 45s, 12m03s, 1h05m (seconds do not matter past an hour)."""
    if seconds is None:
        return "-"
    s = int(round(abs(seconds)))
    h, rem = divmod(s, 3600)
    if h:
        return f"{h}h{rem // 60:02d}m"
    return f"{rem // 60}m{rem % 60:02d}s" if rem >= 60 else f"{rem}s"


def until(at: datetime | None, now: datetime) -> str:
    """A countdown in the view's compact durations ("in 4m12s", "overdue by 30s")."""
    return countdown(at, now, dur)


def clock(dt: datetime) -> str:
    return utc(dt).strftime("%H:%M:%S")


def short(value: str, limit: int) -> str:
    """One line of at most ``limit`` characters: newlines folded, the rest cut with '…'."""
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: max(1, limit - 1)] + "…"


def line(*parts: str | Text | tuple[str, str], width: int, style: str = "") -> Text:
    """One terminal line of ``width`` cells at most, cut with an ellipsis."""
    text = Text.assemble(*parts, style=style, no_wrap=True, overflow="ellipsis")
    text.truncate(width, overflow="ellipsis")
    return text


def cell(value: str | Text, width: int, style: str = "") -> Text:
    """A fixed-width column of a hand-laid row (padded, cut with an ellipsis)."""
    text = value.copy() if isinstance(value, Text) else Text(value, style=style)
    text.truncate(width, overflow="ellipsis", pad=True)
    return text


def packed(chunks: list[Text], width: int, first_prefix: str, style: str = "") -> list[Text]:
    """Chunks laid left to right, two spaces apart, wrapped only between chunks."""
    lines: list[Text] = []
    current = Text(first_prefix, style=style)
    indent = " " * cell_len(first_prefix)
    for chunk in chunks:
        chunk = chunk.copy()
        chunk.truncate(width - len(indent), overflow="ellipsis")
        fresh = current.plain.strip() == "" or current.plain == first_prefix
        if not fresh and cell_len(current.plain) + 2 + chunk.cell_len > width:
            lines.append(current)
            current = Text(indent)
            fresh = True
        current.append_text(chunk if fresh else Text("  ") + chunk)
    lines.append(current)
    for text in lines:
        text.no_wrap, text.overflow = True, "ellipsis"
        text.truncate(width, overflow="ellipsis")
    return lines


def bar(fraction: float, width: int) -> Text:
    """A progress bar that reads in plain text too (logs, exports): █ done, ░ to go."""
    fraction = min(1.0, max(0.0, fraction))
    done = int(round(fraction * width))
    return Text.assemble(("█" * done, "green"), ("░" * (width - done), "dim"))
