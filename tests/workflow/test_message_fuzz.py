"""Bad messages never kill or blind a run.

Hypothesis sends over a thousand junk signal and update payloads (wrong types, unknown
keys at every depth, huge and unicode strings, junk gates, null, lists, nested junk, no
input, several inputs) to one running workflow; then binary and undecodable payloads and
unknown signal names. Every update is refused with a message naming the bad field; every
signal is recorded as ignored; the status query keeps working; the run then approves
normally and ends SUCCEEDED, and its history holds no failed workflow task.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import RawValue

from runbook.messages import (
    SIGNAL_ABORT,
    SIGNAL_APPROVE,
    SIGNAL_REJECT,
    UPDATE_APPROVE,
    UPDATE_REJECT,
    GateAck,
)
from runbook.status import RunState
from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import (
    FAST_SOAK,
    GATES,
    approve_when_pending,
    at_gate,
    finished,
    new_queue,
    start,
    status,
    until,
    worker_for,
)

FIELDS = {
    SIGNAL_APPROVE: {"gate": "phase-1", "approver": "alice", "comment": "", "plan_digest": None},
    SIGNAL_REJECT: {"gate": "phase-1", "approver": "alice", "reason": ""},
    SIGNAL_ABORT: {"by": "alice", "reason": ""},
}
UPDATE_OF = {SIGNAL_APPROVE: UPDATE_APPROVE, SIGNAL_REJECT: UPDATE_REJECT}
REQUIRED = {SIGNAL_APPROVE: ("gate", "approver"), SIGNAL_REJECT: ("gate", "approver"),
            SIGNAL_ABORT: ("by",)}
IDENTITY_FIELD = {SIGNAL_APPROVE: "approver", SIGNAL_REJECT: "approver", SIGNAL_ABORT: "by"}
TEXT_LIMIT = {"comment": 2000, "reason": 2000, "plan_digest": 128, "gate": 64}


@dataclass
class Junk:
    """A message that must be refused, and the field its refusal must name."""

    kind: str  # the signal name; approve/reject also go as their update
    args: list[Any]
    field: str


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
nested_junk = st.recursive(
    json_scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20)
not_a_string = nested_junk.filter(lambda v: not isinstance(v, str))
# Present but not a string: null would read as "absent" for an optional field.
not_a_string_nor_null = not_a_string.filter(lambda v: v is not None)
printable_key = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1,
                        max_size=30)
bad_identities = st.one_of(
    st.sampled_from(["", "   ", "\t\n", "al\x00ice", "ali\x1bce", "alice\u200b", "\u200d",
                     "\u202eecila", "bob\x7f", "\ufeffcarol"]),
    st.integers(129, 100_000).map(lambda n: "a" * n),
    # A control or invisible character inside a name (not at its ends, where some are
    # whitespace that stripping would remove).
    st.tuples(st.text(max_size=10), st.characters(categories=["Cc", "Cf"]), st.text(max_size=10))
    .map(lambda parts: "a" + "".join(parts) + "z"))


@st.composite
def junk_messages(draw) -> Junk:
    kind = draw(st.sampled_from(list(FIELDS)))
    base = dict(FIELDS[kind])
    how = draw(st.sampled_from(["not-an-object", "arity", "unknown-key", "nested-unknown-key",
                                "wrong-type", "missing", "identity", "too-long", "junk-gate"]))
    if how == "not-an-object":
        # Bytes travel as binary/plain: once kept raw in the status, they broke the query.
        value = draw(st.one_of(nested_junk.filter(lambda v: not isinstance(v, dict)),
                               st.binary(min_size=1, max_size=64)))
        return Junk(kind, [value], "payload")
    if how == "arity":
        count = draw(st.sampled_from([0, 2, 3]))
        return Junk(kind, [base] * count, "payload")
    if how == "unknown-key":
        key = draw(printable_key.filter(lambda k: k not in base))
        return Junk(kind, [{**base, key: draw(nested_junk)}], key)
    if how == "nested-unknown-key":
        # Junk below a known field: the field is named (its type is wrong).
        field = draw(st.sampled_from(list(base)))
        return Junk(kind, [{**base, field: {draw(printable_key): draw(nested_junk)}}], field)
    if how == "wrong-type":
        field = draw(st.sampled_from(list(base)))
        value = draw(not_a_string_nor_null if field == "plan_digest" else not_a_string)
        return Junk(kind, [{**base, field: value}], field)
    if how == "missing":
        field = draw(st.sampled_from(REQUIRED[kind]))
        return Junk(kind, [{k: v for k, v in base.items() if k != field}], field)
    if how == "identity":
        field = IDENTITY_FIELD[kind]
        return Junk(kind, [{**base, field: draw(bad_identities)}], field)
    if how == "too-long":
        field = draw(st.sampled_from([f for f in base if f in TEXT_LIMIT]))
        text = draw(st.text(min_size=1, max_size=3)) * (TEXT_LIMIT[field] + 1)
        return Junk(kind, [{**base, field: text}], field)
    if kind == SIGNAL_ABORT:  # abort has no gate: a junk identity instead
        return Junk(kind, [{**base, "by": draw(bad_identities)}], "by")
    gate = draw(st.text(max_size=60).filter(lambda g: g not in GATES))
    return Junk(kind, [{**base, "gate": gate}], "gate")


async def _refusal(handle, update: str, args: list[Any]) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(update, args=args, result_type=GateAck)
    return str(info.value.cause)


def _names(field: str, refusal: str) -> bool:
    # Long or unicode keys are printed escaped and cut; their first characters still show.
    return f"{field[:20]}" in refusal or (field == "gate" and "unknown gate" in refusal)


# A long proof: `./dev test -m faults` (CI) runs it; `./dev test` stays under 5 minutes.
@pytest.mark.faults
async def test_a_thousand_junk_messages_leave_the_run_intact(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    loop = asyncio.get_running_loop()
    sent = {"signals": 0, "updates": 0}
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"requested_by": "carol", "soak": FAST_SOAK}, tq)
        await until(env, handle, at_gate("phase-1"))

        async def send(junk: Junk) -> None:
            await handle.signal(junk.kind, args=junk.args)
            sent["signals"] += 1
            if junk.kind in UPDATE_OF:
                refusal = await _refusal(handle, UPDATE_OF[junk.kind], junk.args)
                sent["updates"] += 1
                assert _names(junk.field, refusal), (junk.field, refusal)
                assert len(refusal) < 1000 and refusal.isprintable(), refusal

        # Hypothesis drives the examples from a thread; each is sent on the worker's loop.
        @settings(max_examples=650, database=None, derandomize=True, deadline=None,
                  phases=[Phase.explicit, Phase.generate, Phase.shrink],
                  suppress_health_check=list(HealthCheck))
        @given(junk_messages())
        def fuzz(junk: Junk) -> None:
            asyncio.run_coroutine_threadsafe(send(junk), loop).result(timeout=60)

        await asyncio.to_thread(fuzz)
        # Over a thousand payloads: every example a signal, most of them an update too.
        assert sent["signals"] + sent["updates"] >= 1000 and sent["updates"] >= 300, sent

        # Every signal was recorded as ignored (the latest ones kept, all counted).
        st_ = await until(env, handle, lambda s: s.ignored_messages_total >= sent["signals"],
                          skip_s=0)
        assert st_.ignored_messages_total == sent["signals"]
        assert st_.state == RunState.AWAITING_APPROVAL and st_.pending_gate.id == "phase-1"
        assert all(g.approvals == [] for g in st_.gates)
        assert 0 < len(st_.ignored_messages) <= 50
        assert len(st_.model_dump_json()) < 64 * 1024

        for gate in GATES:
            await approve_when_pending(env, handle, gate, approver="alice")
        report = await finished(handle)
        assert report.outcome == RunState.SUCCEEDED
        await status(handle)
    events = await _no_failed_workflow_task(handle)
    # An ignored signal costs its own event and at most one workflow task (3 events); so
    # does a refused update on this test server, which keeps its workflow task. A run
    # would need over 12,000 junk messages to reach Temporal's 51,200-event limit.
    assert events <= 4 * (sent["signals"] + sent["updates"]) + 1000, events


async def test_binary_undecodable_and_misaddressed_messages(time_skipping_env):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    binary = RawValue(Payload(metadata={"encoding": b"binary/plain"}, data=b"\xff\xfe\x00approve"))
    not_json = RawValue(Payload(metadata={"encoding": b"json/plain"}, data=b"\xff{not json"))
    unknown_encoding = RawValue(Payload(metadata={"encoding": b"x-custom/whatever"}, data=b"\x80"))
    async with worker_for(env, cloud, tq):
        handle = await start(env, {"requested_by": "carol", "soak": FAST_SOAK}, tq)
        await until(env, handle, at_gate("phase-1"))

        # `temporal workflow signal --name abort` without --input: no payload at all.
        await handle.signal(SIGNAL_ABORT)
        await handle.signal(SIGNAL_ABORT, args=[{"by": "alice"}, {"by": "bob"}])
        await handle.signal(SIGNAL_APPROVE, binary)
        await handle.signal(SIGNAL_APPROVE, not_json)  # undecodable: the SDK drops it
        await handle.signal(SIGNAL_REJECT, unknown_encoding)  # likewise
        await handle.signal("aprove", not_json)  # a typo'd name: recorded, raw
        await handle.signal("abort ", {"by": "alice"})
        st_ = await until(env, handle, lambda s: s.ignored_messages_total >= 5, skip_s=0)

        ignored = [(i.signal, i.reason, i.payload) for i in st_.ignored_messages]
        assert [i[0] for i in ignored] == [SIGNAL_ABORT, SIGNAL_ABORT, SIGNAL_APPROVE, "aprove",
                                           "abort "]
        assert "got 0 inputs" in ignored[0][1] and ignored[0][2] == "(no input)"
        assert "got 2 inputs" in ignored[1][1]
        assert "got binary data" in ignored[2][1] and "\\xff\\xfe" in ignored[2][2]
        assert "unknown signal 'aprove'" in ignored[3][1] and "json/plain" in ignored[3][2]
        assert st_.state == RunState.AWAITING_APPROVAL  # neither abort was taken

        for update, args in ((UPDATE_APPROVE, []), (UPDATE_REJECT, [{"gate": "phase-1"}, {}])):
            assert "payload: expected exactly one JSON object" in await _refusal(handle, update, args)
        assert "payload: must be a JSON object" in await _refusal(handle, UPDATE_APPROVE, [binary])

        for gate in GATES:
            await approve_when_pending(env, handle, gate, approver="alice")
        report = await finished(handle)
        assert report.outcome == RunState.SUCCEEDED
    await _no_failed_workflow_task(handle)


async def _no_failed_workflow_task(handle) -> int:
    """The history's length, after checking that no workflow task failed in it."""
    history = await handle.fetch_history()
    failed = [e.event_id for e in history.events
              if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert failed == [], f"workflow task failed at events {failed}"
    return len(history.events)
