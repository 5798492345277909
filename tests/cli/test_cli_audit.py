"""Audit built from exported histories of real runs (devstack + worker + simulator).

The fixtures were exported with `temporal workflow show -w ID --output json` after runs
driven by this CLI: a full success (alice approved phase 1 with the plan digest, bob the
rest), a rejection at phase 2 (dave), and a signal approval (erin) followed by an abort
(frank).
"""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from cli.audit import build_audit
from cli.history_file import history_from_file
from cli.audit_render import to_html, to_json, to_markdown
from runbook.payloads import decode

# Not imported from conftest: several test directories have one, and the name is ambiguous.
FIXTURES = Path(__file__).parent / "fixtures"


def history_of(name: str) -> WorkflowHistory:
    return history_from_file(str(FIXTURES / f"{name}.history.json"))


def audit_of(name: str):
    return build_audit(history_of(name), source="fixture")


@pytest.fixture(scope="module")
def happy():
    return audit_of("happy_path")


@pytest.fixture(scope="module")
def waiting_at_phase_3():
    """The happy run's history as a live audit saw it while gate phase-3 was pending."""
    history = history_of("happy_path")
    approval = next(d for d in audit_of("happy_path").decisions if d.gate == "phase-3")
    # Event ids count from 1: keep every event before the phase-3 approval.
    return build_audit(WorkflowHistory(history.workflow_id, history.events[:approval.event_id - 1]))


def test_started_by_request_and_outcome(happy):
    assert happy.workflow_id.startswith("remediation-1278-")
    assert happy.workflow_type == "RemediationWorkflow"
    assert happy.started_by.startswith("runbook-cli:")
    assert happy.requested_by == "carol"
    assert happy.request["soak"] == {"window_s": 120, "sample_every_s": 60}
    assert happy.outcome == "SUCCEEDED"
    assert happy.report is not None and happy.report.outcome.value == "SUCCEEDED"


def test_a_run_of_an_earlier_runbook_version_is_flagged_not_matched(happy):
    # The fixtures were recorded before the gcp-fidelity-1 runbook change: today's plan
    # for the same request differs, and the audit says why instead of a bare mismatch.
    assert happy.plan is not None
    assert happy.plan.digest != happy.report.plan_digest
    assert happy.plan_note.startswith("WARNING") and "earlier runbook version" in happy.plan_note


CURRENT = Path(__file__).parents[1] / "histories" / "serverless_happy_path.json"


def test_plan_is_rebuilt_and_matches_the_reported_digest():
    """A run of the current runbook (saved by tests/workflow): the rebuilt plan is the one
    its approvers saw, with the steps not applicable on serverless NEGs, and the report's
    Terraform follow-up is in the audit."""
    a = build_audit(history_from_file(str(CURRENT)), source="fixture")
    assert a.plan is not None and a.report is not None
    assert a.plan.digest == a.report.plan_digest
    assert "WARNING" not in a.plan_note
    irreversible = {c.step_id for c in a.plan.changes if not c.reversible}
    assert {"scale-connector", "delete-old-revisions"} <= irreversible
    md = to_markdown(a)
    assert "## Not applicable on this topology (not attempted)" in md
    assert "Timeout sec is not supported" in md
    assert "## Terraform follow-up (changes in force)" in md
    assert "google_vpc_access_connector" in md


def test_every_approval_with_who_when_comment_digest(happy):
    approvals = [d for d in happy.decisions if d.action == "approve"]
    assert [d.gate for d in approvals] == ["phase-1", "phase-2", "phase-3", "phase-4", "cleanup-revisions"]
    assert approvals[0].actor == "alice" and approvals[0].plan_digest == happy.report.plan_digest
    assert {d.actor for d in approvals[1:]} == {"bob"}
    assert all(d.via == "update" and d.identity.startswith("runbook-cli:") for d in approvals)
    assert all("gate APPROVED" in d.result for d in approvals)
    assert approvals[1].comment == "ok phase-2"


def test_activities_have_summary_attempts_duration_outcome(happy):
    mutating = [a for a in happy.activities if a.activity_type == "scale_connector"]
    assert mutating and mutating[0].summary.startswith("Scale connector staging-connector")
    assert all(a.outcome == "completed" and a.attempts >= 1 and a.duration_s is not None
               for a in happy.activities)
    assert any(a.activity_type == "sample_error_rate" for a in happy.activities)


def test_budgets_changes_notifications_timers(happy):
    assert [p.number for p in happy.phases] == [1, 2, 3, 4]
    assert all(p.budget_s == 3600 and p.actual_s is not None and p.breached is False for p in happy.phases)
    applied = {c.step_id for c in happy.changes_applied}
    assert {"scale-connector", "expand-sql", "configure-backend", "delete-old-revisions"} <= applied
    assert happy.changes_source == "the run's final report"
    assert any(n.level == "outcome" for n in happy.notifications)
    assert any(t.outcome == "fired" and "soak" in t.summary for t in happy.timers)


def test_timeline_is_chronological_and_complete(happy):
    times = [e.at for e in happy.timeline]
    assert times == sorted(times)
    kinds = {e.kind for e in happy.timeline}
    assert {"start", "approve", "activity", "timer", "state", "end"} <= kinds
    # Every approval and activity is there once, at its own history event, in history order.
    kind_of = {e.event_id: e.event_type for e in history_of("happy_path").events}
    approvals = [e.event_id for e in happy.timeline if e.kind == "approve"]
    activities = [e.event_id for e in happy.timeline if e.kind == "activity"]
    assert approvals == [d.event_id for d in happy.decisions if d.action == "approve"]
    assert approvals == sorted(approvals) and len(approvals) == 5
    assert {kind_of[i] for i in approvals} == {EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED}
    assert activities == sorted(activities)
    assert activities == [r.event_id for r in happy.activities if r.activity_type != "notify"]
    assert {kind_of[i] for i in activities} == {EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    scheduled = [i for i, k in kind_of.items() if k == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert len(activities) == len(scheduled) - len(happy.notifications)


def test_live_phase_time_stops_at_the_gate_not_at_the_next_phase(happy, waiting_at_phase_3):
    live = waiting_at_phase_3
    assert live.report is None and live.closed_at is None
    assert [p.number for p in live.phases] == [1, 2]
    assert all(p.source == "search attribute changes (approximate)" for p in live.phases)
    # Waiting at gate phase-3 is not phase 2's time: each phase matches the run's own report.
    reported = {p.number: p.duration_s for p in happy.report.phases}
    for p in live.phases:
        assert p.actual_s == pytest.approx(reported[p.number], abs=0.5), p
        assert p.budget_s == 3600 and p.breached is False
    assert 8 < live.phases[1].actual_s < 10


def test_live_changes_come_from_completed_activities(happy, waiting_at_phase_3):
    live = waiting_at_phase_3
    assert live.changes_source == ("completed activities that reported changed=true "
                                   "(run has no final report)")
    applied = [c.step_id for c in live.changes_applied]
    assert applied == ["scale-connector", "expand-sql", "deploy-incident-env", "route-traffic",
                       "configure-backend", "health-check-staging-backend-health-check",
                       "health-check-staging-auth-health-check",
                       "backend-timeout-staging-backend-service", "backend-timeout-staging-auth-service"]
    assert live.changes_reverted == []
    # The same before/after as the run later reported for those steps.
    reported = {c.step_id: c for c in happy.changes_applied}
    for c in live.changes_applied:
        assert (c.before, c.after) == (reported[c.step_id].before, reported[c.step_id].after), c.step_id
        assert c.resource.startswith("projects/netra-staging/")


def test_rejection_is_recorded_with_reason():
    a = audit_of("rejected")
    reject = [d for d in a.decisions if d.action == "reject"]
    assert len(reject) == 1
    assert reject[0].actor == "dave" and reject[0].comment == "connector metrics look wrong"
    assert a.outcome == "REJECTED"


def test_signal_approval_and_abort():
    a = audit_of("aborted")
    approve, abort = [d for d in a.decisions if d.action in ("approve", "abort")]
    assert approve.via == "signal" and approve.actor == "erin"
    assert approve.result == "applied (in the run's approvals)"
    assert abort.actor == "frank" and abort.comment == "drill over"
    assert a.outcome == "ABORTED"


def test_markdown_names_every_approver_and_change(happy):
    md = to_markdown(happy)
    for name in ("alice", "bob", "carol"):
        assert name in md
    for change in happy.changes_applied:
        assert change.step_id in md
    assert "## Phases: budget vs actual" in md
    assert "machineType: e2-micro → e2-standard-4" in md
    # Every table row has as many cells as its header: pipes inside values are escaped.
    for block in md.split("\n\n"):
        rows = [r for r in block.splitlines() if r.startswith("|")]
        if rows:
            widths = {len(re.findall(r"(?<!\\)\|", r)) for r in rows}
            assert len(widths) == 1, block[:200]


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href") and v and not v.startswith("#"):
                self.external.append(v)


def test_html_is_self_contained_and_escaped(happy):
    happy = happy.model_copy(deep=True)  # the module's fixture stays as the history says
    happy.request["note"] = "<script>alert(1)</script>"
    page = to_html(happy)
    parser = _Assets()
    parser.feed(page)
    assert parser.external == []
    assert "script" not in parser.tags
    assert "&lt;script&gt;" in page
    assert "<style>" in page and "alice" in page


def test_json_round_trips(happy):
    data = json.loads(to_json(happy))
    assert data["outcome"] == "SUCCEEDED"
    assert len(data["decisions"]) == 5


def test_payload_decoding():
    p = Payload(metadata={"encoding": b"json/plain"}, data=b'{"gate": "phase-1"}')
    assert decode(p) == {"gate": "phase-1"}
    assert decode(Payload(metadata={"encoding": b"binary/null"})) is None
    raw = decode(Payload(metadata={"encoding": b"binary/plain"}, data=b"\x00\x01"))
    assert raw == {"binary_base64": base64.b64encode(b"\x00\x01").decode()}
    assert "payload, 3 bytes" in decode(Payload(metadata={"encoding": b"binary/encrypted"}, data=b"abc"))
    # What the SDK's converter cannot read is still shown as present, never dropped.
    assert decode(Payload(metadata={"encoding": b"json/plain"}, data=b"{bad")) == "<json/plain payload, 4 bytes>"


def test_changes_show_the_fields_that_changed_not_whole_containers(happy):
    md = to_markdown(happy)
    applied = md.split("## Changes applied")[1].split("\n## ")[0]
    row = next(r for r in applied.splitlines() if r.startswith("| configure-backend |"))
    lines = row.split(" | ")[2].removesuffix(" |").split("<br>")
    for line in ("template.containers[0].env.DATABASE_POOL_SIZE: 10 → 8",
                 "(added) template.containers[0].env.VPC_CONNECTOR_SCALING_BUFFER: 30",
                 "template.containers[0].resources.limits.memory: 512Mi → 6Gi",
                 "(added) template.scaling.minInstanceCount: 2"):
        assert line in lines, line
    # The unchanged rest of the template (the image, the secrets) is left out of the row.
    assert "us-docker.pkg.dev" not in row and "secretKeyRef" not in row and '"env"' not in row
    assert "(added) databaseFlags.max_connections: 300" in md
    page = to_html(happy)
    assert "template.containers[0].resources.limits.memory: 512Mi → 6Gi<br>" in page


def test_json_audit_carries_each_change_field_by_field(happy):
    data = json.loads(to_json(happy))
    diff = next(d for d in data["change_diffs"] if d["step_id"] == "configure-backend")
    assert diff["outcome"] == "applied"
    assert {"path": "template.containers[0].resources.limits.memory", "change": "changed",
            "before": "512Mi", "after": "6Gi"} in diff["fields"]
    assert {"path": "template.scaling.minInstanceCount", "change": "added",
            "after": 2} in diff["fields"]
    # The whole records stay for anyone who needs them.
    assert data["changes_applied"][0]["before"] == {"machineType": "e2-micro", "minInstances": 2,
                                                    "maxInstances": 3}


@pytest.mark.parametrize("fmt, start", [("md", "# Audit of remediation run"),
                                        ("MD", "# Audit of remediation run"),
                                        ("markdown", "# Audit of remediation run"),
                                        ("html", "<!DOCTYPE html>"), ("json", "{")])
def test_audit_command_formats(fmt, start):
    from typer.testing import CliRunner

    from cli.main import app
    r = CliRunner().invoke(app, ["audit", "--history-file",
                                 str(FIXTURES / "happy_path.history.json"), "--format", fmt])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(start)


def test_audit_command_refuses_an_unknown_format():
    from typer.testing import CliRunner

    from cli.main import app
    r = CliRunner().invoke(app, ["audit", "--history-file",
                                 str(FIXTURES / "happy_path.history.json"), "--format", "pdf"])
    assert r.exit_code == 1
    assert "unknown format 'pdf'" in r.output and "markdown (or md)" in r.output


def test_failure_decisions_pauses_and_resumes_are_decisions_in_the_audit():
    from temporalio.api.common.v1 import Payloads
    from temporalio.api.history.v1 import HistoryEvent, WorkflowExecutionSignaledEventAttributes

    history = history_of("happy_path")
    events = list(history.events)
    last = events[-2]  # before the run completed

    def signal(offset: int, name: str, payload: dict) -> HistoryEvent:
        ev = HistoryEvent(event_id=last.event_id * 10 + offset, event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
                          workflow_execution_signaled_event_attributes=WorkflowExecutionSignaledEventAttributes(
                              signal_name=name, identity="runbook-cli:test",
                              input=Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"},
                                                               data=json.dumps(payload).encode())])))
        ev.event_time.CopyFrom(last.event_time)
        return ev

    extra = [signal(1, "pause", {"by": "gina", "reason": "db vacuum running"}),
             signal(2, "resume", {"by": "gina", "reason": "vacuum done"}),
             signal(3, "decide_failure", {"gate": "decide-configure-backend", "decision": "retry",
                                          "by": "hank", "reason": "quota raised"})]
    a = build_audit(WorkflowHistory(history.workflow_id, events[:-1] + extra + events[-1:]))
    got = [(d.action, d.actor, d.gate, d.comment) for d in a.decisions[-3:]]
    assert got == [("pause", "gina", None, "db vacuum running"),
                   ("resume", "gina", None, "vacuum done"),
                   ("decide", "hank", "decide-configure-backend", "retry: quota raised")]
    assert any(e.kind == "decide" and "hank" in e.text for e in a.timeline)


def test_a_plan_rebuilt_for_drift_is_explained_not_flagged():
    """drift_reapproval: a phase-2 target changed by hand; the run rebuilt its plan before
    the phase-2 gate. The audit says so instead of warning of a digest mismatch."""
    path = Path(__file__).resolve().parent.parent / "histories" / "drift_reapproval.json"
    a = build_audit(history_from_file(str(path)), source="fixture")
    assert a.plan is not None and a.report.plan_digest != a.plan.digest
    assert "WARNING" not in a.plan_note and "targets drifted" in a.plan_note
    assert a.report.plan_digest in a.plan_note
    # Approvals of the first plan (phase-1) and of the rebuilt one (phase-2 on) are both
    # this run's plans: neither is flagged as naming a foreign plan.
    assert not [n for n in a.notes if "not this run's plan" in n]
