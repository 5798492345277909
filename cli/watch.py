"""`runbook status --watch`: one screen that says what the run is doing now.

``render_watch`` is pure (status, pending activities, clock and terminal size in; a
renderable out). Top to bottom: the run line, the open gate, the step(s) in flight,
phases with finished steps collapsed, then the latest escalations, failures and rollback.
Every line is one terminal line (cut with an ellipsis, never folded), so the view can
count its height: on a short terminal the lower sections go first; the run line, the gate
and the steps in flight always stay.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from cli.render import STATE_STYLE, STATUS_STYLE, lease_line
from cli.watch_parts import (
    PendingStep,
    bar,
    cell,
    clock,
    dur,
    line,
    packed,
    seconds_since,
    short,
    until,
    utc,
)
from runbook.activity_io import UNDO_PREFIX
from runbook.status import (
    TERMINAL_STATES,
    GateRecord,
    PhaseRecord,
    RunState,
    RunStatus,
    StepRecord,
    StepStatus,
)

__all__ = ["PendingStep", "render_watch"]

WIDE = 120  # from this many columns lines carry more detail
MARK = {"SUCCEEDED": "✓", "RUNNING": "▶", "FAILED": "✗", "COMPENSATED": "↺", "ROLLED_BACK": "↺",
        "COMPENSATION_FAILED": "✗", "LEFT_IN_PLACE": "!", "SKIPPED": "-", "PENDING": "○"}


# --- 1. the run --------------------------------------------------------------------------


def _run_lines(wid: str, st: RunStatus, now: datetime, width: int) -> list[Text]:
    lines = [line(("Run ", "bold"), (wid, "bold"), f" · incident {st.incident_id}"
                  f" · requested by {st.requested_by or 'unknown'}",
                  (" (verified)", "green") if st.identity and st.identity.requester_verified
                  else (" (claimed)", "yellow"), width=width)]
    phase = next((p for p in st.phases if p.number == st.current_phase), None)
    elapsed = seconds_since(st.started_at, utc(st.finished_at) if st.finished_at else now)
    state = (Text(f" {st.state.value} ", style="bold reverse yellow") if st.state == RunState.PAUSED
             else Text(st.state.value, style=STATE_STYLE.get(st.state, "bold red")))
    lines.append(line(state, f" · phase {phase.number} {phase.title}" if phase else " · no phase yet",
                      f" · {dur(elapsed)} elapsed" if elapsed is not None else "",
                      f" · {st.outcome_reason}" if st.outcome_reason else "", width=width))
    running = [s.id for s in st.steps if s.status == StepStatus.RUNNING]
    if st.pause is not None and st.pause.held_at is None:
        lines.append(line((f"pausing after {', '.join(running) or 'the step in flight'}", "bold yellow"),
                          f" · asked by {st.pause.by} {dur(seconds_since(st.pause.requested_at, now))}"
                          f" ago: {st.pause.reason or 'no reason given'}", width=width))
    elif st.pause is not None:
        lines.append(line((f"PAUSED by {st.pause.by}", "bold reverse yellow"),
                          f" {dur(seconds_since(st.pause.held_at, now))} ago",
                          f" · held before {st.pause.held_before}" if st.pause.held_before else "",
                          " · deadlines frozen" if st.pause.freeze_deadlines else "",
                          f": {st.pause.reason or 'no reason given'}", width=width))
    if st.lease is not None and st.lease.state in ("queued", "refused"):
        lines.append(line("lease: ", lease_line(st.lease), width=width))
    return lines


# --- 2. the open gate --------------------------------------------------------------------


def _sent(st: RunStatus, gate: str, level: str) -> str | None:
    sent = [e for e in st.escalations if e.gate == gate and e.level == level]
    if not sent:
        return None
    e = sent[-1]
    failed = f", {len(e.failed)} channel(s) failed" if e.failed else ""
    return f"sent {clock(e.at)}{failed}"


def _ladder(st: RunStatus, g: GateRecord, now: datetime, after_timeout: str) -> str:
    remind = _sent(st, g.id, "reminder") or until(g.remind_at, now)
    escalate = _sent(st, g.id, "escalation") or until(g.escalate_at, now)
    return f"remind {remind} · escalate {escalate} · timeout {until(g.timeout_at, now)}{after_timeout}"


def _gate_lines(st: RunStatus, g: GateRecord, now: datetime, width: int) -> tuple[list[Text], list[Text]]:
    """(lines always shown, drift lines shown when there is room)."""
    wide = width >= WIDE
    if g.kind == "decision":
        core = [line((g.id, "bold"), " · step ", (g.step_id or "?", "bold"),
                     f" failed after {g.attempts or '?'} attempt(s)", width=width),
                line(("error: ", "red"), short(g.failure or "-", 400 if wide else 200), width=width),
                line("options: ", (" | ".join(g.options) or "-", "bold"),
                     f" · {len(g.in_force)} change(s) in force"
                     + (f": {', '.join(g.in_force)}" if wide and g.in_force else ""), width=width),
                line(_ladder(st, g, now, " → rollback"), width=width)]
        return core, []
    names = ", ".join(a.approver for a in g.approvals)
    allowed = ", ".join(g.approvers_allowed) or "anyone"
    core = [line((g.id, "bold"), f" · {g.title} · ", (f"approvals {len(g.approvals)}/{g.min_approvals}",
                                                        "bold"), f" ({names})" if names else "",
                 f" · plan {st.plan.digest}" if st.plan and st.plan.digest else "", width=width),
            line(f"may approve: {allowed} · quorum {g.min_approvals}",
                 (f" · {g.quorum_note}", "yellow") if g.quorum_note else "",
                 (f" · not {st.requested_by} (two-person rule)", "yellow") if g.two_person_rule else "",
                 width=width),
            line(_ladder(st, g, now, ""), width=width)]
    drift = [line(("drift ", "yellow"), f"{d.step_id}: {d.resource} {d.field} "
                  f"{short(str(d.planned_from), 60 if wide else 20)} → {short(str(d.now), 60 if wide else 20)}"
                  f" ({d.kind})", width=width) for d in g.drift]
    if g.drift_check_error:
        drift.append(line(("drift check failed: ", "red"), g.drift_check_error, width=width))
    return core, drift


def _gate_panel(g: GateRecord, lines: list[Text], width: int) -> Panel:
    decision = g.kind == "decision"
    return Panel(Group(*lines), title="Decision needed" if decision else "Waiting for approval",
                 title_align="left", border_style="red" if decision else "yellow", padding=(0, 1),
                 width=width)


# --- 3. the steps in flight --------------------------------------------------------------


def _pending_for(step: StepRecord, pending: list[PendingStep]) -> PendingStep | None:
    # Step activities carry the step id; soak samples are scheduled under generated ids.
    return (next((p for p in pending if p.step_id == step.id), None)
            or next((p for p in pending if step.kind == "soak" and p.activity_type == step.activity), None))


def _in_flight(st: RunStatus, pending: list[PendingStep], now: datetime,
               width: int) -> tuple[list[Text], list[Text]]:
    """(one line per step in flight, their detail lines: soak bar, last failure)."""
    wide = width >= WIDE
    heads: list[Text] = []
    details: list[Text] = []
    for s in (s for s in st.steps if s.status == StepStatus.RUNNING):
        p = _pending_for(s, pending)
        attempt = p.attempts_text if p else f"attempt {s.attempts or 1}"
        heads.append(line(("▶ ", "bold cyan"), (s.id, "bold cyan"),
                          f" · {dur(seconds_since(s.started_at, now))} · {attempt}",
                          f" · op {p.operation}" if p and p.operation else "",
                          f" · {s.summary}" if s.summary else "", width=width))
        phase = next((ph for ph in st.phases if ph.number == s.phase), None)
        if s.kind == "soak" and phase is not None:
            details.append(_soak_line(phase, now, width))
        if p and p.last_failure:
            details.append(line(("  last failure: ", "red"), short(p.last_failure, 400 if wide else 200),
                                width=width))
    shown = {s.id for s in st.steps if s.status == StepStatus.RUNNING}
    for p in pending:  # compensations of a rollback: not a step record of their own
        if p.step_id.startswith(UNDO_PREFIX) and p.step_id not in shown:
            heads.append(line(("▶ ", "bold magenta"), (p.step_id, "bold magenta"), f" · {p.attempts_text}",
                              f" · op {p.operation}" if p.operation else "",
                              f" · last failure: {short(p.last_failure, 200)}" if p.last_failure else "",
                              width=width))
    if not heads and st.state in (RunState.RUNNING, RunState.VALIDATING):
        upcoming = next((s.id for s in st.steps if s.status == StepStatus.PENDING), None)
        heads.append(line(("▶ between steps", "cyan"), f" · next: {upcoming}" if upcoming else "",
                          width=width))
    return heads, details


def _soak_line(phase: PhaseRecord, now: datetime, width: int) -> Text:
    figures = (f" · {phase.soak_samples} sample(s) · {phase.soak_restarts} restart(s)")
    if not phase.soak_window_s:
        return line("  soak", figures, width=width)
    clean = min(float(phase.soak_window_s), seconds_since(phase.soak_clean_since, now) or 0.0)
    fraction = clean / phase.soak_window_s
    label = f" {int(clean)}/{phase.soak_window_s}s clean ({fraction:.0%})"
    bar_width = max(10, min(60, width - len(label) - len(figures) - 4))
    return line("  ", bar(fraction, bar_width), (label, "bold"), figures, width=width)


# --- 4. phases, finished steps collapsed -------------------------------------------------


def _counts(steps: list[StepRecord]) -> str:
    counts = Counter(s.status.value.lower().replace("_", " ") for s in steps)
    if set(counts) == {"pending"}:
        return f"{counts['pending']} step(s) to run"
    return ", ".join(f"{n} {what}" for what, n in counts.items())


def _phase_lines(st: RunStatus, now: datetime, width: int) -> list[Text]:
    wide = width >= WIDE
    lines = []
    for p in st.phases:
        steps = [s for s in st.steps if s.phase == p.number]
        if p.status == "RUNNING":
            used = dur(seconds_since(p.started_at, now))
            left = until(p.budget_at, now)
            budget = (Text(f"{used}, budget BREACHED", "bold red") if p.budget_breached
                      else Text(f"{used} used, budget {left}, hard limit {until(p.hard_limit_at, now)}"
                                if wide else f"{used} used, {left.replace('in ', '')} left"
                                if left.startswith("in ") else f"{used} used, {left}"))
        elif p.duration_s is not None:
            budget = Text(f"{dur(p.duration_s)} of {dur(p.budget_s)}", "red" if p.budget_breached else "")
        else:
            budget = Text(f"budget {dur(p.budget_s)}", "dim")
        counts = " · ".join(filter(None, [p.owner if wide else "", _counts(steps)]))
        status = cell(p.status, 10, STATUS_STYLE.get(p.status, ""))
        if not wide:  # the mark says it; only an unusual end is spelled out
            status = Text("" if p.status in ("SUCCEEDED", "RUNNING", "PENDING") else f"{p.status} ",
                          STATUS_STYLE.get(p.status, ""))
        lines.append(line(cell(f"{MARK.get(p.status, '·')} {p.number}", 4),
                          cell(p.title, 40 if wide else 24), " ", status,
                          cell(budget, 56 if wide else 24), " ", counts, width=width))
    cleanup = [s for s in st.steps if s.phase == 0]
    if cleanup and any(s.status != StepStatus.PENDING for s in cleanup):
        lines.append(line(cell("  0", 4), cell("cleanup", 40 if wide else 20), " ", _counts(cleanup),
                          width=width))
    return lines


def _current_steps(st: RunStatus, width: int) -> list[Text]:
    steps = [s for s in st.steps if s.phase == st.current_phase]
    if not steps:
        return []
    chunks = []
    for s in steps:
        took = f" {dur(s.duration_s)}" if s.duration_s is not None else ""
        chunks.append(Text.assemble((MARK.get(s.status.value, "·"), STATUS_STYLE.get(s.status.value, "")),
                                    " ", s.id, took))
    return packed(chunks, width, f"phase {st.current_phase} steps: ", style="")


# --- 5. what happened last ---------------------------------------------------------------


def _history_lines(st: RunStatus, width: int) -> list[Text]:
    wide = width >= WIDE
    lines = []
    if st.state == RunState.ROLLING_BACK or (st.rollback_log and st.state in TERMINAL_STATES):
        for r in st.rollback_log[-3:]:
            lines.append(line(("rollback ", "magenta"), f"{clock(r.at)} ", (r.step_id, "bold"),
                              f" {r.action.upper()}", f": {r.detail}" if r.detail else "", width=width))
    failed = [s for s in st.steps if s.error and s.status in (
        StepStatus.FAILED, StepStatus.COMPENSATION_FAILED, StepStatus.SKIPPED)]
    for s in failed[-2:]:
        lines.append(line(("✗ ", "red"), (s.id, "bold"), f" {s.status.value}: ",
                          short(s.error or "", 400 if wide else 120), width=width))
    for e in st.escalations[-2:]:
        channels = ", ".join([f"{c} delivered" for c in e.delivered] + [f"{c} sending" for c in e.pending]
                             + [f"{f.channel} FAILED" for f in e.failed])
        lines.append(line((f"{clock(e.at)} {e.level}", "yellow"), f" → {e.recipient}: {e.subject}",
                          f" ({channels})" if channels and wide else "", width=width))
    return lines


# --- layout ------------------------------------------------------------------------------


def _fill(lines: list[Text], room: int, what: str, width: int) -> list[Text]:
    """As many of ``lines`` as ``room`` allows; a cut list ends with how much it left out."""
    if len(lines) <= room:
        return lines
    if room <= 0:
        return []
    return lines[: room - 1] + [line((f"… {len(lines) - room + 1} more {what} line(s): "
                                      "enlarge the terminal", "dim"), width=width)]


def render_watch(workflow_id: str, status: RunStatus, pending: list[PendingStep],
                 now: datetime, width: int, height: int) -> RenderableType:
    st = status
    head = _run_lines(workflow_id, st, now, width)
    gate = st.pending_gate if st.state not in TERMINAL_STATES else None
    gate_core, gate_drift = _gate_lines(st, gate, now, width - 4) if gate else ([], [])
    flight, flight_detail = _in_flight(st, pending, now, width)
    # Never dropped: the run line, the gate (its frame is 2 lines) and the steps in flight.
    room = height - len(head) - len(flight) - (len(gate_core) + 2 if gate else 0)
    flight_detail = _fill(flight_detail, room, "step", width)
    room -= len(flight_detail)
    gate_drift = _fill(gate_drift, room, "drift", width - 4)
    room -= len(gate_drift)
    lower: list[Text] = []
    for section, what in ((_phase_lines(st, now, width), "phase"), (_current_steps(st, width), "step"),
                          (_history_lines(st, width), "history")):
        kept = _fill(section, room, what, width)
        lower += kept
        room -= len(kept)
    parts: list[RenderableType] = list(head)
    if gate:
        parts.append(_gate_panel(gate, gate_core + gate_drift, width))
    return Group(*parts, *flight, *flight_detail, *lower)
