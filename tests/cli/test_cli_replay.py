"""`runbook replay`: saved histories against the current workflow code, with verdicts (no server)."""

from __future__ import annotations

import io
import json
from datetime import datetime

import pytest
from rich.console import Console
from temporalio import workflow
from temporalio.worker import UnsandboxedWorkflowRunner

from cli.client import CliError
from cli.replay import PATCH_HINT, replay_and_report
from tests.workflow.harness import HISTORIES
from tests.workflow.test_replay import DriftedWorkflow


# The sandbox re-imports this module to validate the workflow below, and refuses it: this
# wall-clock read at least (an import above may be refused first).
_IMPORTED_AT = datetime.now()


@workflow.defn(name="RemediationWorkflow")
class UnloadableWorkflow:
    """Workflow code that cannot load in the sandbox (wall-clock time at import)."""

    @workflow.run
    async def run(self, request: dict | None = None) -> None:
        return None


# A short run (refused at preflight, so the run failed, before any gate): for the tests
# whose point is not that the current code replays a whole run.
SHORT = HISTORIES / "preflight_refused.json"


def _last_event_type(path) -> str:
    return json.loads(path.read_text())["events"][-1]["eventType"]


def test_a_saved_history_is_compatible(offline_cli):
    r = offline_cli("replay", "--history-file", str(HISTORIES / "happy_path.json"))
    assert r.code == 0, r.text
    assert r.out.splitlines()[0].startswith("compatible   ") and "RemediationWorkflow" in r.out
    assert r.out.splitlines()[-1] == "1 compatible, 0 incompatible, 0 unreadable"


def test_a_run_that_failed_still_replays_compatible(offline_cli):
    # The run was refused at preflight: the workflow failed, its replay did not.
    assert _last_event_type(SHORT) == "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED"
    r = offline_cli("replay", "--history-file", str(SHORT))
    assert r.code == 0, r.text
    assert "1 compatible, 0 incompatible, 0 unreadable" in r.out


def test_a_changed_workflow_is_reported_incompatible_with_the_reason():
    # The real thing a deploy can break: code that schedules the steps the saved run skipped.
    console = Console(file=io.StringIO(), width=400)
    code = replay_and_report([HISTORIES / "serverless_happy_path.json"], console,
                             workflows=[DriftedWorkflow], workflow_runner=UnsandboxedWorkflowRunner())
    text = console.file.getvalue()
    assert code == 1, text
    lines = text.splitlines()
    assert lines[0].startswith("INCOMPATIBLE") and "serverless_happy_path.json" in lines[0]
    assert lines[1].startswith("  reason: [TMPRL1100] Nondeterminism error:")
    assert lines[2] == f"  next: {PATCH_HINT}"
    assert lines[-1] == "0 compatible, 1 incompatible, 0 unreadable"
    assert "Traceback" not in text and "Failure {" not in text


def test_a_history_edited_to_mismatch_fails_the_command(offline_cli, tmp_path):
    # The first scheduled activity renamed: the current code's first command no longer matches.
    history = json.loads(SHORT.read_text())
    scheduled = next(e for e in history["events"] if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED")
    original = scheduled["activityTaskScheduledEventAttributes"]["activityType"]["name"]
    scheduled["activityTaskScheduledEventAttributes"]["activityType"]["name"] = "renamed_activity"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(history))
    r = offline_cli("replay", "--history-file", str(SHORT), "--history-file", str(edited))
    assert r.code == 1, r.text
    verdicts = [line.split()[0] for line in r.out.splitlines() if not line.startswith(" ")][:2]
    assert verdicts == ["compatible", "INCOMPATIBLE"]
    assert "Nondeterminism error" in r.out and "'renamed_activity'" in r.out and f"'{original}'" in r.out
    assert "workflow.patched()" in r.out
    assert r.out.splitlines()[-1] == "1 compatible, 1 incompatible, 0 unreadable"
    assert "Traceback" not in r.text and "WARN" not in r.err


def test_unreadable_files_are_named_with_the_reason(offline_cli, tmp_path):
    (tmp_path / "a_not_json.json").write_text("not json at all")
    (tmp_path / "b_not_history.json").write_text(json.dumps({"runs": []}))
    nested = tmp_path / "nested"
    nested.mkdir()
    (nested / "c_good.json").write_text(SHORT.read_text())
    (nested / "ignored.txt").write_text("not a .json file")
    r = offline_cli("replay", "--history-file", str(tmp_path))
    assert r.code == 1, r.text
    heads = [line for line in r.out.splitlines() if not line.startswith(" ")]
    assert heads[0].startswith("unreadable") and heads[0].endswith("a_not_json.json")
    assert heads[1].startswith("unreadable") and heads[1].endswith("b_not_history.json")
    assert heads[2].startswith("compatible") and "c_good.json" in heads[2]
    assert 'not a Temporal history export (expected a JSON object with an "events" list)' in r.out
    assert "not a Temporal history export (Expecting value" in r.out
    assert "temporal workflow show -w ID --output json" in r.out
    assert heads[-1] == "1 compatible, 0 incompatible, 2 unreadable"
    assert "Traceback" not in r.text


def test_a_missing_path_is_a_usage_error(offline_cli, tmp_path):
    missing = tmp_path / "missing.json"
    r = offline_cli("replay", "--history-file", str(HISTORIES / "happy_path.json"), "--history-file", str(missing))
    assert r.code == 2, r.text
    assert f"error: --history-file {missing}: no such file or directory" in " ".join(r.err.split())
    assert "next:" in r.err and "compatible" not in r.out and "Traceback" not in r.text
    r = offline_cli("replay", "--history-file", str(tmp_path))  # a directory with no histories
    assert r.code == 2 and "no *.json history files under" in r.err, r.text
    r = offline_cli("replay")
    assert r.code == 2 and "--history-file" in r.err, r.text


def test_workflow_code_that_does_not_load_is_an_error_not_a_verdict():
    console = Console(file=io.StringIO(), width=400)
    with pytest.raises(CliError) as err:
        replay_and_report([HISTORIES / "happy_path.json"], console, workflows=[UnloadableWorkflow])
    assert err.value.message.startswith("the current workflow code does not load: Failed validating "
                                        "workflow RemediationWorkflow (RestrictedWorkflowAccessError")
    assert "RestrictedWorkflowAccessError: Cannot access" in err.value.message
    assert "./dev test tests/workflow" in err.value.hint
    assert "compatible" not in console.file.getvalue()
