"""Render an AuditReport as Markdown, JSON or one self-contained HTML page."""

from __future__ import annotations

import html
import json
from typing import Any

from cli.audit_model import AuditReport
from cli.diffs import format_value, render_diff_lines
from cli.in_force import audit_facts, audit_sections
from cli.render import fmt_duration, fmt_time
from runbook.identity_policy import describe_identity
from runbook.status import ChangeRecord


# Audit values are the record: shortened only past this width, to keep tables usable.
VALUE_WIDTH = 160


class Lines(tuple):
    """A cell of several lines (one changed field each): <br> between them in both formats."""


def _md_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md(value: Any) -> str:
    """A Markdown table cell: no pipes or newlines may break the table."""
    if isinstance(value, Lines):
        return "<br>".join(_md_text(html.escape(line, quote=False)) for line in value)
    return _md_text(value if isinstance(value, str) else format_value(value, VALUE_WIDTH))


def _html_cell(value: Any) -> str:
    if isinstance(value, Lines):
        return "<br>".join(html.escape(line) for line in value)
    return html.escape(value if isinstance(value, str) else format_value(value, VALUE_WIDTH))


def _sections(a: AuditReport) -> list[tuple[str, list[str], list[list[Any]]]]:
    """Every tabular section once, shared by the Markdown and HTML renderers."""
    s: list[tuple[str, list[str], list[list[Any]]]] = []
    s.append(("Timeline", ["time", "kind", "event"],
              [[fmt_time(e.at), e.kind, e.text] for e in a.timeline]))
    s.append(("Approvals, rejections and other decisions",
              ["time", "action", "gate", "by", "proof of identity", "client", "via",
               "comment / reason", "plan digest", "result"],
              [[fmt_time(d.at), d.action, d.gate or "", d.actor or "", d.proof, d.identity, d.via,
                d.comment, d.plan_digest or "", d.result] for d in a.decisions]))
    if a.plan is not None:
        s.append((f"Plan (digest {a.plan.digest})", ["step", "resource", "field", "current", "desired", "reversible"],
                  [[c.step_id, c.resource, c.field, format_value(c.current, VALUE_WIDTH),
                    format_value(c.desired, VALUE_WIDTH),
                    "yes" if c.reversible else "NO"] for c in a.plan.changes]))
        if a.plan.not_applicable:
            s.append(("Not applicable on this topology (not attempted)", ["step", "resource", "reason"],
                      [[n.step_id, n.resource, n.reason] for n in a.plan.not_applicable]))
        if a.plan.problems or a.plan.warnings:
            s.append(("Plan preflight problems and warnings", ["kind", "detail"],
                      [["problem", f"{p.field}: {p.reason}"] for p in a.plan.problems]
                      + [["warning", w] for w in a.plan.warnings]))
    s.append(("Activities", ["scheduled", "activity", "summary", "attempts", "duration", "outcome", "error"],
              [[fmt_time(r.scheduled_at), r.activity_type, r.summary, r.attempts,
                fmt_duration(r.duration_s), r.outcome, r.error or ""] for r in a.activities]))
    s.append(("Escalations and notifications", ["time", "level", "to", "channel", "subject", "outcome"],
              [[fmt_time(n.at), n.level, n.recipient, n.channel or "-", n.subject,
                n.outcome if n.outcome == "completed" else
                f"{n.outcome.upper()} after {n.attempts} attempt(s): {n.error or ''}"]
               for n in a.notifications]))
    s.append(("Timers (deadlines, reminders, budgets, soak samples)",
              ["started", "timer", "duration", "outcome", "ended"],
              [[fmt_time(t.started_at), t.summary or t.timer_id, fmt_duration(t.duration_s), t.outcome,
                fmt_time(t.ended_at)] for t in a.timers]))
    s.append(("Phases: budget vs actual", ["#", "phase", "status", "budget", "actual", "breached", "source"],
              [[p.number, p.title, p.status, fmt_duration(p.budget_s), fmt_duration(p.actual_s),
                "-" if p.breached is None else ("YES" if p.breached else "no"), p.source]
               for p in a.phases]))
    for title, changes in (("Changes applied", a.changes_applied),
                           ("Changes reverted", a.changes_reverted),
                           ("Changes left in place", a.changes_left_in_place),
                           ("Sent, outcome unknown", a.changes_outcome_unknown)):
        s.append((title, ["step", "summary", "what changed (before → after)"], _change_rows(changes)))
    if a.report is not None and a.report.iac_followup:
        s.append(("Terraform follow-up (changes in force)", ["step", "terraform resource", "resource",
                                                            "attributes", "note"],
                  [[f.step_id, f.terraform_resource, f.resource, ", ".join(f.attributes), f.note]
                   for f in a.report.iac_followup]))
    s += audit_sections(a.in_force)
    return s


def _diff(before: Any, after: Any) -> list[str]:
    """The changed fields, one line each (cli/in_force.py renders its changes with it)."""
    return render_diff_lines(before, after, width=VALUE_WIDTH)


def _change_rows(changes: list[ChangeRecord]) -> list[list[Any]]:
    """Only the fields that differ, one per line: what an auditor needs, not whole resources."""
    rows: list[list[Any]] = []
    for c in changes:
        diff = _diff(c.before, c.after)
        rows.append([c.step_id, c.summary or c.resource,
                     Lines(diff) if diff else "(no field-level difference recorded)"])
    return rows


def _facts(a: AuditReport) -> list[tuple[str, str]]:
    facts = [("Workflow", f"{a.workflow_id} (run {a.run_id or '?'}, type {a.workflow_type}, "
                          f"task queue {a.task_queue})"),
             ("Started", f"{fmt_time(a.started_at)} by {a.started_by or 'unknown'}"),
             ("Requested by", a.requested_by or "unknown"),
             ("Identity", describe_identity(a.identity, a.requested_by)),
             ("Outcome", a.outcome + (f" — {a.outcome_detail}" if a.outcome_detail else "")),
             ("Ended", fmt_time(a.closed_at)
                       + (f" (Temporal: {a.closed_as})" if a.closed_as else ""))]
    if a.static_summary:
        facts.append(("Summary", a.static_summary))
    if a.plan is not None:
        facts.append(("Plan", f"{len(a.plan.changes)} changes, {len(a.plan.problems)} problems, "
                              f"digest {a.plan.digest} ({a.plan_note})"))
    elif a.plan_note:
        facts.append(("Plan", a.plan_note))
    if a.request_problems:
        facts.append(("Request problems", "; ".join(a.request_problems)))
    facts += audit_facts(a.in_force)
    facts.append(("Changes from", a.changes_source or "-"))
    facts.append(("Audit source", f"{a.source}, generated {fmt_time(a.generated_at)}"))
    return facts


def to_markdown(a: AuditReport) -> str:
    out = [f"# Audit of remediation run `{a.workflow_id}`", ""]
    out += [f"- **{k}:** {v}" for k, v in _facts(a)]
    for title, header, rows in _sections(a):
        out += ["", f"## {title}", ""]
        if not rows:
            out.append("_none_")
            continue
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    out += ["", "## Request", "", "```json", json.dumps(a.request, indent=2, sort_keys=True), "```"]
    if a.report is not None:
        out += ["", "## Final report (workflow result, authoritative)", "", "```json",
                a.report.model_dump_json(indent=2), "```"]
    if a.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in a.notes]
    return "\n".join(out) + "\n"


def to_json(a: AuditReport) -> str:
    return a.model_dump_json(indent=2)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2330}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d6dae1}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #d6dae1;padding:.3rem .5rem;text-align:left;vertical-align:top}
td:first-child{white-space:nowrap}th{background:#f2f4f7}tr:nth-child(even) td{background:#fafbfc}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}
pre{background:#f6f8fa;padding:1rem;overflow:auto;font-size:12px}
.none{color:#6b7280;font-style:italic}
.ok{color:#067d3e;font-weight:600}.bad{color:#b42318;font-weight:600}
"""


def to_html(a: AuditReport) -> str:
    e = html.escape
    good = a.outcome in ("SUCCEEDED",)
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>Audit {e(a.workflow_id)}</title><style>{_CSS}</style></head><body>",
             f"<h1>Audit of remediation run <code>{e(a.workflow_id)}</code></h1>",
             f"<p>Outcome: <span class=\"{'ok' if good else 'bad'}\">{e(a.outcome)}</span></p><dl>"]
    parts += [f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in _facts(a)]
    parts.append("</dl>")
    for title, header, rows in _sections(a):
        parts.append(f"<h2>{e(title)}</h2>")
        if not rows:
            parts.append("<p class=\"none\">none</p>")
            continue
        parts.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header)
                     + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</tbody></table>")
    parts.append(f"<h2>Request</h2><pre>{e(json.dumps(a.request, indent=2, sort_keys=True))}</pre>")
    if a.report is not None:
        parts.append("<h2>Final report (workflow result, authoritative)</h2>"
                     f"<pre>{e(a.report.model_dump_json(indent=2))}</pre>")
    if a.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in a.notes) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# "md" is what people type for Markdown (and the file extension).
RENDERERS = {"markdown": to_markdown, "md": to_markdown, "json": to_json, "html": to_html}
