"""Show what a terminated (or timed-out) run left in force, and a rollback's report.

Shared by `runbook status` (rich), `runbook audit` (Markdown/HTML sections) and
`runbook rollback --wait`. Every view ends with the command that undoes the changes.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from runbook.changes_in_force import ChangesInForce, InForceChange
from runbook.rollback import RollbackReport, rollback_workflow_id


def rollback_command(workflow_id: str) -> str:
    return f"runbook rollback {workflow_id}"


def headline(cif: ChangesInForce) -> str:
    how = ("was terminated" if cif.closed_as == "TERMINATED"
           else "hit its workflow execution timeout" if cif.closed_as == "TIMED_OUT"
           else f"closed as {cif.closed_as}")
    who = f" by {cif.closed_by}" if cif.closed_by else ""
    why = f" ({cif.close_reason})" if cif.close_reason else ""
    return (f"The run {how}{who}{why}: no workflow code ran after that, so its own rollback "
            f"never ran. {len(cif.changes)} change(s) were left in force and "
            f"{len(cif.in_flight)} step(s) were in flight.")


def what_changed(c: InForceChange) -> str:
    from cli.audit_render import _diff  # here: audit_render imports this module

    if not c.after:  # failed after issuing its change: only the replaced state is known
        return f"before: {json.dumps(c.before, sort_keys=True, default=str)}; after: unknown ({c.evidence})"
    return "; ".join(_diff(c.before, c.after)) or "(no field-level difference recorded)"


def next_step(cif: ChangesInForce, rollback_state: str | None = None) -> str:
    rid = rollback_workflow_id(cif.workflow_id)
    if rollback_state == "RUNNING":
        return f"a rollback is running: {rid} (follow it in the UI)"
    if rollback_state == "COMPLETED":
        return (f"already rolled back by {rid} (COMPLETED); its report: "
                f"`temporal workflow result -w {rid}`")
    if not cif.changes and not cif.in_flight:
        return "nothing to undo"
    parts = []
    if any(c.reversible for c in cif.changes):
        parts.append(f"undo the reversible changes: `{rollback_command(cif.workflow_id)}`"
                     + (f" (the last one, {rid}, ended {rollback_state})" if rollback_state else ""))
    if any(not c.reversible for c in cif.changes):
        parts.append("irreversible changes stay in force (update Terraform so they are kept)")
    if cif.in_flight:
        parts.append("check the in-flight steps' resources by hand: their outcome is unknown")
    return "; ".join(parts)


def change_rows(cif: ChangesInForce) -> list[list[Any]]:
    return [[c.step_id, c.resource, what_changed(c), "yes" if c.reversible else "NO (irreversible)"]
            for c in cif.changes]


def in_flight_rows(cif: ChangesInForce) -> list[list[Any]]:
    return [[s.step_id, s.resource, "its undo was in flight" if s.undo else "in flight",
             "unknown: check by hand"] for s in cif.in_flight]


def audit_sections(cif: ChangesInForce | None) -> list[tuple[str, list[str], list[list[Any]]]]:
    if cif is None or not cif.abandoned:
        return []
    return [(f"Changes in force when the run ended ({cif.closed_as}; undo with "
             f"`{rollback_command(cif.workflow_id)}`)",
             ["step", "resource", "what changed (before → after)", "reversible"], change_rows(cif)),
            ("Steps in flight when the run ended (outcome unknown)",
             ["step", "resource", "state", "outcome"], in_flight_rows(cif))]


def audit_facts(cif: ChangesInForce | None) -> list[tuple[str, str]]:
    if cif is None or not cif.abandoned:
        return []
    return [("Left in force", headline(cif)), ("Next", next_step(cif))]


def _table(title: str, header: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title)
    for col in header:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*(str(c) for c in row))
    return t


def render_in_force(cif: ChangesInForce, rollback_state: str | None = None) -> RenderableType:
    parts: list[RenderableType] = [Text(headline(cif), "bold red")]
    if cif.changes:
        parts.append(_table("Changes still in force", ["step", "resource", "before → after", "reversible"],
                            change_rows(cif)))
    if cif.in_flight:
        parts.append(_table("In flight when the run ended (outcome unknown)",
                            ["step", "resource", "state", "outcome"], in_flight_rows(cif)))
    parts.append(Text(f"next: {next_step(cif, rollback_state)}", "yellow"))
    return Panel(Group(*parts), title=f"Left in force by {cif.workflow_id}", border_style="red")


def render_rollback_report(r: RollbackReport) -> RenderableType:
    parts: list[RenderableType] = [Text(
        f"Rollback of {r.source_workflow_id} ({r.source_closed_as}): {len(r.reverted)} reverted, "
        f"{len(r.failed)} failed, {len(r.left_in_place)} left in place (irreversible), "
        f"{len(r.in_flight_unknown)} in flight (unknown)", "bold green" if r.complete else "bold red")]
    for title, items in (("Reverted", r.reverted), ("FAILED to undo", r.failed),
                         ("Left in place (irreversible)", r.left_in_place)):
        if items:
            parts.append(_table(title, ["step", "resource", "restored (before)", "detail"],
                                [[c.step_id, c.resource, json.dumps(c.before, sort_keys=True, default=str),
                                  c.detail] for c in items]))
    if r.in_flight_unknown:
        parts.append(_table("In flight when the source ended: check by hand", ["step", "resource"],
                            [[s.step_id, s.resource] for s in r.in_flight_unknown]))
    return Group(*parts)
