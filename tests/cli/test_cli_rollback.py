"""`runbook rollback`: bad arguments are refused before connecting, and say what to do."""

from __future__ import annotations


def test_rollback_needs_a_run_id_and_says_what_to_do(offline_cli):
    r = offline_cli("rollback", "  ")
    assert r.code == 1
    assert "WORKFLOW_ID: must name the workflow id of the run to roll back" in r.err
    assert "next: e.g. `runbook rollback remediation-1278-ab12cd --by <you>`" in r.err
    assert "cannot reach" not in r.err and "Traceback" not in r.text


def test_rollback_with_no_server_says_how_to_start_one(offline_cli):
    r = offline_cli("rollback", "remediation-1278-abc123", "--by", "dana", "--wait")
    assert r.code == 1
    assert "cannot reach the Temporal server" in r.err and "./dev up" in r.err
    assert "Traceback" not in r.text
