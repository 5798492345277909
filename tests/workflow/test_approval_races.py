"""Approvals under races, and the two-person rule against spelling tricks.

Many approvals sent at once (updates and signals through asyncio.gather) by the same
person, in several spellings, and by a quorum: exactly one counts per person, the gate
opens exactly once, and the requester cannot approve under any spelling.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from temporalio.client import WorkflowUpdateFailedError

from runbook import activity_names as act
from runbook.identity import normalize_identity
from runbook.messages import SIGNAL_APPROVE, UPDATE_APPROVE, GateAck
from runbook.status import RunState
from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import (
    FAST_SOAK,
    at_gate,
    finished,
    new_queue,
    start,
    status,
    until,
    worker_for,
)

@pytest.mark.parametrize("raw", ["carol", "Carol", "carol ", "\tCAROL\n", "ｃａｒｏｌ", "ＣＡＲＯＬ"])
def test_spellings_of_one_person_normalise_alike(raw):
    assert normalize_identity(raw, "approver") == "carol"


@pytest.mark.parametrize("raw, reason", [
    ("", "approver: must not be empty"), ("  ", "approver: must not be empty"),
    ("carol\u200b", "approver: contains an invisible (format) character U+200B at position 5"),
    ("ca\u202erol", "invisible (format) character U+202E"),
    ("ca\x00rol", "approver: contains a control character U+0000"),
    ("a" * 129, "approver: longer than 128 characters (129)"),
    ("a" * 100_000, "approver: longer than 128 characters (100000)"),
    (5, "approver: must be a string, got int"),
])
def test_unreadable_identities_are_refused_naming_the_field(raw, reason):
    with pytest.raises(ValueError) as info:
        normalize_identity(raw, "approver")
    assert reason in str(info.value)


QUORUM = {"requested_by": "carol", "soak": FAST_SOAK, "approval": {"gates": {
    "phase-1": {"min_approvals": 2}}}}


async def _race(handle, approvers: list[str], gate: str = "phase-1") -> tuple[list[GateAck], list[str]]:
    """Send every approval as an update and as a signal, all at once; the updates' acks and
    refusals."""
    def message(who: str) -> dict:
        return {"gate": gate, "approver": who}

    results = await asyncio.gather(
        *(handle.execute_update(UPDATE_APPROVE, message(w), result_type=GateAck) for w in approvers),
        *(handle.signal(SIGNAL_APPROVE, message(w)) for w in approvers),
        return_exceptions=True)
    updates = results[:len(approvers)]
    unexpected = [r for r in results if isinstance(r, BaseException)
                  and not isinstance(r, WorkflowUpdateFailedError)]
    assert not unexpected, unexpected
    acks = [r for r in updates if isinstance(r, GateAck)]
    refusals = [str(r.cause) for r in updates if isinstance(r, WorkflowUpdateFailedError)]
    return acks, refusals


async def test_the_requester_cannot_approve_under_any_spelling(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, QUORUM, tq)
        await until(env, handle, at_gate("phase-1"))
        spellings = ["carol", "Carol", "carol ", " CAROL", "ｃａｒｏｌ", "carol\u200b", "\u200bcarol",
                     "car\u00adol", "ca\u202erol"]
        acks, refusals = await _race(handle, spellings)
        assert acks == []
        assert len(refusals) == len(spellings)
        for who, refusal in zip(spellings, refusals):
            assert ("two-person rule" in refusal or "invisible (format) character" in refusal), \
                (who, refusal)
        for bad, reason in (("", "must not be empty"), ("  \t", "must not be empty"),
                            ("al\x07ice", "control character"), ("a" * 100_000, "longer than 128")):
            acks, refusals = await _race(handle, [bad])
            assert acks == [] and len(refusals) == 1 and "approver" in refusals[0] \
                and reason in refusals[0], refusals
        st = await until(env, handle, lambda s: s.ignored_messages_total == len(spellings) + 4,
                         skip_s=0)
        gate = next(g for g in st.gates if g.id == "phase-1")
        assert gate.approvals == [] and gate.status == "OPEN"
        await handle.cancel()
        await finished(handle)


async def test_one_person_counts_once_and_a_quorum_opens_the_gate_once(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    async with worker_for(env, cloud, tq):
        handle = await start(env, QUORUM, tq)
        await until(env, handle, at_gate("phase-1"))

        # Twenty approvals by one person, in four spellings, at once: one counts.
        alice = ["alice", "Alice", "alice ", "ALICE"] * 5
        acks, refusals = await _race(handle, alice)
        gate = next(g for g in (await status(handle)).gates if g.id == "phase-1")
        assert [a.approver for a in gate.approvals] == ["alice"]
        by_update = gate.approvals[0].via == "update"
        assert len(acks) == int(by_update) and len(refusals) == len(alice) - int(by_update)
        assert all(a.approvals == 1 and a.gate_status == "OPEN" for a in acks)
        assert all("alice already approved phase-1" in r for r in refusals), refusals
        ignored = len(alice) - int(not by_update)  # every signal but the one that counted
        st = await until(env, handle, lambda s: s.ignored_messages_total >= ignored, skip_s=0)
        assert st.ignored_messages_total == ignored
        assert gate.status == "OPEN" and st.pending_gate.id == "phase-1"

        # Five more people at once, each three times: exactly one more counts, and the
        # gate opens once.
        others = ["bob", "dave", "erin", "frank", "grace"] * 3
        acks, refusals = await _race(handle, others)
        gate = next(g for g in (await status(handle)).gates if g.id == "phase-1")
        approvers = [a.approver for a in gate.approvals]
        assert len(approvers) == 2 and approvers[0] == "alice" and approvers[1] in others
        assert gate.status == "APPROVED" and gate.closed_at is not None
        by_update = gate.approvals[1].via == "update"
        assert len(acks) == int(by_update) and len(refusals) == len(others) - int(by_update)
        assert all(a.gate_status == "APPROVED" and a.approvals == 2 for a in acks)
        assert all("not pending" in r or "already approved" in r for r in refusals), refusals
        ignored += len(others) - int(not by_update)
        st = await until(env, handle, lambda s: s.ignored_messages_total >= ignored, skip_s=0)
        assert st.ignored_messages_total == ignored
        assert Counter(e.signal for e in st.ignored_messages) == {SIGNAL_APPROVE: ignored}

        # The phase behind the gate ran once.
        await until(env, handle, at_gate("phase-2"))
        assert cloud.step_calls(act.SCALE_CONNECTOR) == ["scale-connector"]
        assert (await status(handle)).state == RunState.AWAITING_APPROVAL
        await handle.cancel()
        await finished(handle)
