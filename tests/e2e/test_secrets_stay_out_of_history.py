"""Credentials never enter workflow history, yet a rollback restores them exactly."""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.client import WorkflowHistory

from runbook.status import RunState
from tests.e2e.conftest import admin, queue, real_worker
from tests.e2e.world import BACKEND, serving
from tests.history_scan import CANARY, PROBE_TOKEN, secrets_in
from tests.workflow.harness import finished, HISTORIES, approve_when_pending, start, status


def _env(state: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in
            state["run"][BACKEND]["template"]["containers"][0]["env"] if "value" in e}


async def test_plaintext_credential_env_var_is_fingerprinted_and_restored(time_skipping_env, fresh_sim):
    env, sim, tq = time_skipping_env, fresh_sim, queue()
    # A service that (badly) keeps a credential in a literal env var, behind instance-group
    # backends (where health checks apply, so phase 2 patches them).
    await admin(sim, "POST", "/_sim/reset", {"world": "instance-group"})
    world = await admin(sim, "GET", "/_sim/state")
    canary = {"name": "SMTP_PASSWORD", "value": CANARY}
    world["run"][BACKEND]["template"]["containers"][0]["env"].append(canary)
    for name, rec in world["run"].items():  # the revisions were deployed with it too
        if name.startswith(BACKEND + "/revisions/"):
            rec["containers"][0]["env"].append(canary)
            rec.get("_sim", {}).pop("template", None)  # rebuilt from the revision on load
    await admin(sim, "POST", "/_sim/reset", world)
    # Phase 2 fails on its load-balancer group, after the backend was reconfigured.
    await admin(sim, "POST", "/_sim/faults", {"api": "compute", "method": "PATCH",
                                              "resource": "staging-auth-health-check",
                                              "kind": "http", "status": 403})
    async with real_worker(env, sim, tq):
        handle = await start(env, {"soak": {"window_s": 60}}, tq)
        await approve_when_pending(env, handle, "phase-1")
        await approve_when_pending(env, handle, "phase-2")
        report = await finished(handle)
        st = await status(handle)
    assert report.outcome == RunState.ROLLED_BACK, report.reason
    assert "PermissionDenied" in report.reason
    # Undone by routing traffic back to the old revisions, the credential serves again,
    # byte for byte, and the template still carries it...
    assert [e.step_id for e in st.rollback_log if e.action == "compensated"] == [
        "backend-timeout-staging-auth-service", "backend-timeout-staging-backend-service",
        "health-check-staging-backend-health-check", "configure-backend", "route-traffic",
        "deploy-incident-env", "vpc-access-auth", "expand-sql"]
    # Its PATCH was refused (403): nothing changed, so nothing is claimed or undone.
    assert ("health-check-staging-auth-health-check", "nothing_to_undo") in {
        (e.step_id, e.action) for e in st.rollback_log}
    end = await admin(sim, "GET", "/_sim/state")
    assert _env(end)["SMTP_PASSWORD"] == CANARY
    for rev in serving(end, BACKEND):
        env_of = {e["name"]: e.get("value") for e in
                  end["run"][f"{BACKEND}/revisions/{rev}"]["containers"][0]["env"]}
        assert env_of["SMTP_PASSWORD"] == CANARY
    # ...and the history holds only its fingerprint.
    history = await handle.fetch_history()
    assert secrets_in(history) == []
    configure = next(s for s in st.steps if s.id == "configure-backend")
    env_before = {e["name"]: e.get("value") for e in
                  configure.before["template"]["containers"][0]["env"] if "value" in e}
    assert env_before["SMTP_PASSWORD"].startswith("redacted:sha256:")
    assert env_before["DATABASE_POOL_SIZE"] == "10"  # ordinary config stays readable


def test_saved_histories_hold_no_secret_values():
    for path in sorted(Path(HISTORIES).glob("**/*.json")):
        history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
        assert secrets_in(history, (PROBE_TOKEN, CANARY, "probe-token")) == [], path.name
