"""Verified approvers (identity-1): every refusal the issue lists, the accepted path, the
quorum rule for a run without a verified requester, and the deployment's policy.

Real workflow, real worker with a trusted public key, time-skipping server; envelopes are
signed as the approval service signs them (tests/workflow/verified.py)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError

from temporalio.exceptions import ApplicationError

from runbook.messages import (
    SIGNAL_APPROVE,
    UPDATE_ABORT,
    UPDATE_APPROVE,
    UPDATE_DECIDE,
    UPDATE_PAUSE,
    UPDATE_REJECT,
    UPDATE_RESUME,
    WORKFLOW_TYPE,
    GateAck,
)
from runbook.status import RemediationReport, RunState
from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import (
    FAST_SOAK,
    STARTED_RUNS,
    at_gate,
    finished,
    keep_history,
    new_queue,
    start,
    status,
    until,
)
from tests.workflow.verified import Keys, approval, envelope, start_proof, verified_worker
from cli.audit import build_audit
from cli.audit_render import to_markdown
from workflows.current_details import render_current_details


async def start_as(env, tq: str, keys: Keys, requester: str, **request):
    """A run started through the approval service: requester proven by a start envelope."""
    wid = f"wf-{uuid.uuid4().hex[:10]}"
    proof = start_proof(keys.signer, await env.get_current_time(), wid, requester)
    handle = await env.client.start_workflow(
        WORKFLOW_TYPE, {"requested_by": requester, "requester_proof": proof, **request},
        id=wid, task_queue=tq, result_type=RemediationReport)
    STARTED_RUNS.append(handle)
    return handle


async def refused(handle, payload, update: str = UPDATE_APPROVE) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(update, payload, result_type=GateAck)
    return str(info.value.cause)


async def test_every_unproven_approval_is_refused_and_a_verified_one_is_audited(time_skipping_env):
    env, cloud, tq, keys = time_skipping_env, FakeCloud(), new_queue(), Keys()
    async with verified_worker(env, cloud, tq, keys.config()):
        handle = await start_as(env, tq, keys, "carol", soak=FAST_SOAK)
        st = await until(env, handle, at_gate("phase-1"))
        assert st.identity.mode == "verified" and st.identity.requester_verified
        assert st.identity.source == "deployment default"
        digest = st.plan.digest
        gate = "phase-1"

        async def signed(sub="alice", **kw):
            return await envelope(env, handle, kw.pop("signer", keys.signer), sub=sub,
                                  gate=kw.pop("gate", gate), digest=kw.pop("digest", digest), **kw)

        reasons = {
            "unsigned": await refused(handle, approval(gate, "alice", digest, None)),
            "forged": await refused(handle, approval(gate, "alice", digest,
                                                     await signed(signer=keys.forger))),
            "expired": await refused(handle, approval(gate, "alice", digest,
                                                      await signed(age=timedelta(minutes=10)))),
            "other run": await refused(handle, approval(gate, "alice", digest,
                                                        await signed(wid="wf-someone-else"))),
            "other run id": await refused(handle, approval(gate, "alice", digest,
                                                           await signed(rid=str(uuid.uuid4())))),
            "other gate": await refused(handle, approval(gate, "alice", digest,
                                                         await signed(gate="phase-2"))),
            "other sender": await refused(handle, approval(gate, "mallory", digest,
                                                           await signed())),
            "stale digest": await refused(handle, approval(gate, "alice", "0" * 16,
                                                           await signed(digest="0" * 16))),
            "no digest": await refused(handle, approval(gate, "alice", None,
                                                        await signed(digest=None))),
            "own run": await refused(handle, approval(gate, "carol", digest,
                                                      await signed(sub="carol"))),
            "reject signed as approve": await refused(
                handle, {"gate": gate, "approver": "alice", "reason": "no",
                         "envelope": await signed()}, UPDATE_REJECT),
        }
        assert "carries no proof of who sent it" in reasons["unsigned"]
        assert "signature does not verify" in reasons["forged"]
        assert "expired" in reasons["expired"]
        assert "signed for another run" in reasons["other run"]
        assert "signed for another run" in reasons["other run id"]
        assert "signed for gate 'phase-2'" in reasons["other gate"]
        assert "proves 'alice'" in reasons["other sender"]
        assert "does not match the current plan" in reasons["stale digest"]
        assert "plan digest" in reasons["no digest"]
        assert "carol requested this run and may not approve it" in reasons["own run"]
        assert "signed for 'approve', not 'reject'" in reasons["reject signed as approve"]

        # A signal carries no proof: recorded as ignored, never counted.
        await handle.signal(SIGNAL_APPROVE, approval(gate, "alice", digest, None))
        st = await status(handle)
        assert st.pending_gate.approvals == []
        assert "a signal carries no proof" in st.ignored_messages[-1].reason

        token = await signed()
        ack = await handle.execute_update(UPDATE_APPROVE, approval(gate, "alice", digest, token),
                                          result_type=GateAck)
        assert ack.accepted and ack.gate_status == "APPROVED"
        st = await status(handle)
        a = st.gates[0].approvals[0]
        assert (a.approver, a.identity, a.idp, a.channel) == ("alice", "verified",
                                                              "https://issuer.test", "cli")
        assert st.verified_messages[0].act == "approve" and st.verified_messages[0].by == "alice"
        # The same envelope again: each counts once. (Sent at the next gate: the
        # time-skipping server answers no update after a refused one while an activity
        # runs.)
        await until(env, handle, at_gate("phase-2"))
        assert "already used" in await refused(handle, approval(gate, "alice", digest, token))

        # Nothing of the refused messages reached history: one accepted update, and no
        # refused payload (the mallory/carol attempts, the forged envelope) anywhere.
        history = (await handle.fetch_history()).to_json()
        events = json.loads(history)["events"]
        accepted = [e for e in events if e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED"]
        assert len(accepted) == 1
        assert "mallory" not in history and '"carol", "plan_digest"' not in history
        await handle.execute_update(UPDATE_ABORT, {"by": "alice", "reason": "rehearsal over",
                                                   "envelope": await envelope(
                                                       env, handle, keys.signer, sub="alice",
                                                       act="abort")})
        report = await finished(handle)
        assert report.outcome == RunState.ABORTED
        assert report.identity.requester_verified
        assert [m.act for m in report.verified_messages] == ["approve", "abort"]


async def test_one_person_counts_once_under_a_quorum(time_skipping_env):
    env, cloud, tq, keys = time_skipping_env, FakeCloud(), new_queue(), Keys()
    async with verified_worker(env, cloud, tq, keys.config()):
        handle = await start_as(env, tq, keys, "carol", soak=FAST_SOAK,
                                approval={"default": {"min_approvals": 2}})
        st = await until(env, handle, at_gate("phase-1"))
        digest = st.plan.digest

        async def by(sub):
            return approval("phase-1", sub, digest, await envelope(
                env, handle, keys.signer, sub=sub, gate="phase-1", digest=digest))

        ack = await handle.execute_update(UPDATE_APPROVE, await by("alice"), result_type=GateAck)
        assert (ack.approvals, ack.required) == (1, 2)
        assert "alice already approved phase-1" in await refused(handle, await by("alice"))
        ack = await handle.execute_update(UPDATE_APPROVE, await by("bob"), result_type=GateAck)
        assert ack.gate_status == "APPROVED"
        await until(env, handle, at_gate("phase-2"))
        await handle.cancel()
        assert (await finished(handle)).outcome == RunState.ABORTED


async def test_ui_start_without_a_verified_requester_needs_two_verified_approvers(time_skipping_env):
    """A `{}` start (the Web UI) under verified: nobody can be excluded as the requester,
    so each gate needs two distinct verified approvers, and says so."""
    env, cloud, tq, keys = time_skipping_env, FakeCloud(), new_queue(), Keys()
    async with verified_worker(env, cloud, tq, keys.config()):
        handle = await start(env, {"soak": FAST_SOAK, "requested_by": "carol"}, tq)
        st = await until(env, handle, at_gate("phase-1"))
        assert st.identity.mode == "verified" and not st.identity.requester_verified
        assert "no proof of who started it" in st.identity.requester_note
        g = st.pending_gate
        assert g.min_approvals == 2 and not g.two_person_rule
        details = render_current_details(st)
        assert "no verified requester: needs 2 distinct verified approvers" in details
        assert "two-person rule" not in details
        assert "runbook approve <run> --gate phase-1 --digest" in details
        digest = st.plan.digest
        # The claimed requester is not trusted either way: carol may be one of the two.
        for sub in ("carol", "dave"):
            await handle.execute_update(UPDATE_APPROVE, approval("phase-1", sub, digest, await envelope(
                env, handle, keys.signer, sub=sub, gate="phase-1", digest=digest)), result_type=GateAck)
        st = await until(env, handle, at_gate("phase-2"))
        assert st.gates[0].status == "APPROVED"
        # The gate's Slack message offered buttons (the approval notice, verified run).
        approval_notices = [e for e in st.escalations if e.level == "approval"]
        assert approval_notices and approval_notices[0].gate == "phase-1"
        await handle.cancel()
        await finished(handle)


async def test_a_verified_run_end_to_end_replays(time_skipping_env):
    """Every gate approved with verified identities, saved for replay (identity-1)."""
    env, cloud, tq, keys = time_skipping_env, FakeCloud(), new_queue(), Keys()
    async with verified_worker(env, cloud, tq, keys.config()):
        handle = await start_as(env, tq, keys, "carol", soak=FAST_SOAK)
        for gate in ("phase-1", "phase-2", "phase-3", "phase-4", "cleanup-revisions"):
            st = await until(env, handle, at_gate(gate))
            digest = st.plan.digest
            await handle.execute_update(UPDATE_APPROVE, approval(gate, "alice", digest, await envelope(
                env, handle, keys.signer, sub="alice", gate=gate, digest=digest)), result_type=GateAck)
        report = await finished(handle)
        assert report.outcome == RunState.SUCCEEDED
        assert all(a.identity == "verified" for a in report.approvals)
        assert len(report.verified_messages) == 5
    # The audit, from history alone, names who proved each approver and the requester.
    audit = build_audit(await handle.fetch_history())
    approvals = [d for d in audit.decisions if d.action == "approve"]
    assert len(approvals) == 5 and all(
        d.proof.startswith("verified: alice by https://issuer.test via cli") for d in approvals)
    text = to_markdown(audit)
    assert "verified (requester carol, proven by https://issuer.test)" in text
    await keep_history(handle, "verified_approvals")


@pytest.mark.parametrize("config, request_policy, expected", [
    ({"default_mode": "verified", "allow_claimed": False}, "claimed",
     "this deployment takes verified identities only"),
    ({"default_mode": "verified", "trusted": False}, None, "no approval public keys"),
])
async def test_the_deployment_refuses_a_run_it_cannot_verify(time_skipping_env, config,
                                                             request_policy, expected):
    env, cloud, tq, keys = time_skipping_env, FakeCloud(), new_queue(), Keys()
    async with verified_worker(env, cloud, tq, keys.config(**config)):
        request = {"approval": {"identity": request_policy}} if request_policy else {}
        handle = await start(env, request, tq)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert info.value.cause.type == "InvalidRequest"
        assert info.value.cause.details[0][0]["field"] == "approval.identity"
        assert expected in info.value.cause.message
        st = await status(handle)
        assert st.state == RunState.FAILED and expected in st.outcome_reason
        assert cloud.calls == []  # refused before the lease, the diagnosis or any change


async def test_claimed_runs_say_so(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with verified_worker(env, cloud, tq, Keys().config(default_mode="claimed")):
        handle = await start(env, {"soak": FAST_SOAK, "requested_by": "carol"}, tq)
        st = await until(env, handle, at_gate("phase-1"))
        assert st.identity.mode == "claimed"
        assert "identity: claimed, not verified" in render_current_details(st)
        ack = await handle.execute_update(UPDATE_APPROVE, approval("phase-1", "alice", None, None),
                                          result_type=GateAck)
        assert ack.accepted
        st = await status(handle)
        assert st.gates[0].approvals[0].identity == "claimed"
        await handle.cancel()
        await finished(handle)


async def test_an_envelope_counts_once(time_skipping_env):
    """Within its two minutes an envelope could be sent again; the run remembers its id."""
    env, cloud, tq, keys = time_skipping_env, FakeCloud(), new_queue(), Keys()
    async with verified_worker(env, cloud, tq, keys.config()):
        handle = await start_as(env, tq, keys, "carol", soak=FAST_SOAK)
        await until(env, handle, at_gate("phase-1"))
        pause = await envelope(env, handle, keys.signer, sub="alice", act="pause")
        await handle.execute_update(UPDATE_PAUSE, {"by": "alice", "reason": "look", "envelope": pause})
        await handle.execute_update(UPDATE_RESUME, {"by": "alice", "reason": "go", "envelope": await envelope(
            env, handle, keys.signer, sub="alice", act="resume")})
        assert "already used" in await refused(
            handle, {"by": "alice", "reason": "look", "envelope": pause}, UPDATE_PAUSE)
        assert (await status(handle)).pause is None
        await handle.cancel()
        await finished(handle)


async def test_a_verified_run_keeps_its_two_person_rule(time_skipping_env):
    env, cloud, tq, keys = time_skipping_env, FakeCloud(), new_queue(), Keys()
    async with verified_worker(env, cloud, tq, keys.config()):
        handle = await start_as(env, tq, keys, "carol", approval={"two_person_rule": False})
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert info.value.cause.details[0][0]["field"] == "approval.two_person_rule"
        assert "requester could approve their own run" in info.value.cause.message
        assert cloud.calls == []


async def test_without_a_verified_requester_one_person_may_only_roll_back(time_skipping_env):
    """Decision gates of a run nobody can be excluded from: retry and skip go on with
    changes, so one verified person may not choose them; rollback is always allowed."""
    env, cloud, tq, keys = time_skipping_env, FakeCloud(), new_queue(), Keys()
    cloud.failures["configure-backend"] = [ApplicationError(
        "429 quota exceeded", type="FailedPrecondition", non_retryable=True)]
    async with verified_worker(env, cloud, tq, keys.config()):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        for gate in ("phase-1", "phase-2"):
            st = await until(env, handle, at_gate(gate))
            for sub in ("alice", "bob"):
                await handle.execute_update(UPDATE_APPROVE, approval(gate, sub, st.plan.digest, await envelope(
                    env, handle, keys.signer, sub=sub, gate=gate, digest=st.plan.digest)), result_type=GateAck)
        gate = "decide-configure-backend"
        await until(env, handle, at_gate(gate))

        async def decision(what: str):
            return {"gate": gate, "decision": what, "by": "alice", "reason": "quota raised",
                    "envelope": await envelope(env, handle, keys.signer, sub="alice", act="decide",
                                               gate=gate, decision=what)}

        assert "may only roll back" in await refused(handle, await decision("retry"), UPDATE_DECIDE)
        await handle.execute_update(UPDATE_DECIDE, await decision("rollback"))
        report = await finished(handle)
        assert report.outcome == RunState.ROLLED_BACK
