"""Who may approve each gate, and how many: the request's ``approval`` policy.

Identities are kept in one spelling (runbook/identity.py) so the two-person rule and a
quorum compare people, not spellings; a policy no allowed set of approvers could ever
satisfy is refused, since its run could only wait and time out.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from runbook.field_problems import StrictInput
from runbook.identity import normalize_identity
from runbook.resource_names import shown

# Bounds of our own on durations: far beyond any incident, and well inside what a
# timestamp can hold (a gate timeout of 1e12 s overflowed the run's deadline arithmetic).
DAY_S = 24 * 60 * 60
MAX_WAIT_S = 30 * DAY_S
MAX_LIST = 50  # health checks, backend services, approvers, routes: our bound
Seconds = Annotated[int, Field(gt=0, le=MAX_WAIT_S)]


def identity(value: str) -> str:
    """An identity in its one spelling (runbook/identity.py), for the two-person rule."""
    try:
        return normalize_identity(value, "identity")
    except ValueError as err:
        raise ValueError(str(err).removeprefix("identity: ")) from None


def identity_problem(value: str) -> str | None:
    try:
        identity(value)
    except ValueError as err:
        return str(err)
    return None


Identity = Annotated[str, AfterValidator(identity)]


class OrderedDeadlines(StrictInput):
    """A gate's ladder: remind, then escalate, then time out (a gate or a decision gate)."""

    remind_after_s: Seconds
    escalate_after_s: Seconds
    timeout_s: Seconds

    @model_validator(mode="after")
    def _ordered(self) -> "OrderedDeadlines":
        if not self.remind_after_s <= self.escalate_after_s <= self.timeout_s:
            raise ValueError("need remind_after_s <= escalate_after_s <= timeout_s")
        return self


class GatePolicy(OrderedDeadlines):
    remind_after_s: Seconds = 15 * 60
    escalate_after_s: Seconds = 30 * 60
    timeout_s: Seconds = 2 * 60 * 60
    min_approvals: Annotated[int, Field(ge=1, le=10)] = 1
    # Empty: anyone may approve (still subject to the two-person rule). Stored in each
    # person's one spelling (runbook/identity.py), as approvals are compared.
    approvers: Annotated[list[Identity], Field(max_length=MAX_LIST)] = Field(default_factory=list)

    def quorum_problem(self, requester: str, two_person_rule: bool) -> str | None:
        """Why no set of allowed approvers can ever approve this gate, or None."""
        if not self.approvers:
            return None
        eligible = set(self.approvers)
        excluded = ""
        if two_person_rule and requester in eligible:
            eligible.discard(requester)
            excluded = f" once the requester {requester!r} is excluded (two-person rule)"
        if len(eligible) < self.min_approvals:
            return (f"min_approvals is {self.min_approvals} but only {len(eligible)} distinct "
                    f"approver(s) are allowed{excluded}: the gate could only time out")
        return None


GATE_IDS = ("phase-1", "phase-2", "phase-3", "phase-4", "cleanup-revisions")


class ApprovalPolicy(StrictInput):
    # The person who started the run may not approve it (two-person rule).
    two_person_rule: bool = True
    # "verified": approvals, rejections, decisions, aborts and pauses must carry the
    # approval service's signed envelope (runbook/envelope.py); "claimed": the name a caller
    # types is taken as given (local rehearsal). Unset: the worker's deployment default
    # (REMEDIATION_APPROVAL_IDENTITY), fixed in history at run start (activities/identity.py).
    identity: Literal["verified", "claimed"] | None = None
    default: GatePolicy = Field(default_factory=GatePolicy)
    gates: dict[str, GatePolicy] = Field(default_factory=dict, description="per-gate overrides")

    @field_validator("gates")
    @classmethod
    def _known_gates(cls, v: dict[str, GatePolicy]) -> dict[str, GatePolicy]:
        unknown = sorted(shown(g) for g in set(v) - set(GATE_IDS))
        if unknown:
            raise ValueError(f"unknown gate(s) {', '.join(unknown)}; gates are "
                             f"{', '.join(GATE_IDS)}")
        return v

    def for_gate(self, gate_id: str) -> GatePolicy:
        return self.gates.get(gate_id, self.default)

    def quorum_problems(self, requester: str) -> list[tuple[str, str]]:
        """(field, reason) for each policy no approvers could satisfy."""
        policies = [("default", self.default)] + [(f"gates.{g}", p) for g, p in self.gates.items()]
        return [(f"{where}.approvers", problem) for where, policy in policies
                if (problem := policy.quorum_problem(requester, self.two_person_rule))]
