"""Drift: what changed in the world between the plan and a later phase gate.

Before each phase gate after the first, the run diagnoses again and rebuilds the plan.
Changes the run itself made are expected (a row of a finished phase sets the value a
later row planned from), so only what someone or something else changed counts:

- a remaining step's target differs from what its row planned from (a field changed by
  hand while a gate waited), or a remaining step now needs a change the plan did not
  have, or no longer needs one it had (the step became unnecessary);
- a finished phase's change is no longer in force (reverted by hand).

Pure functions of two plans: deterministic, so the workflow can call them, and the CLI
and tests can show the same rows.
"""

from __future__ import annotations

from runbook.plan import DriftRow, Plan, PlannedChange

__all__ = ["AT_DESIRED", "NOW_AT_DESIRED", "DriftRow", "describe_drift", "find_drift",
           "rebuilt_plan"]

# What a row shows where there was no planned change: the target was already as desired.
AT_DESIRED = "as desired (no change planned)"
NOW_AT_DESIRED = "already as desired (step now unnecessary)"


def _key(c: PlannedChange) -> tuple[str, str, str]:
    return (c.step_id, c.resource, c.field)


def _target(c: PlannedChange) -> tuple[str, str]:
    return (c.resource, c.field)


def find_drift(planned: Plan, rebuilt: Plan, done_steps: set[str],
               remaining_steps: set[str]) -> list[DriftRow]:
    """Rows of ``rebuilt`` (diagnosed now) that ``planned`` did not lead us to expect.

    ``done_steps``: steps of finished phases that ran (their changes are expected in
    force); ``remaining_steps``: steps of the phases still to run (cleanup excluded: its
    row is a prediction that every run changes)."""
    applied = {_target(c): c.desired for c in planned.changes if c.step_id in done_steps}
    expected = {}
    for c in planned.changes:
        if c.step_id not in remaining_steps:
            continue
        current = applied.get(_target(c), c.current)
        if current != c.desired:  # a finished phase may already have set it
            expected[_key(c)] = c.model_copy(update={"current": current})
    now = {_key(c): c for c in rebuilt.changes if c.step_id in remaining_steps}
    rows = []
    for key in sorted(set(expected) | set(now)):
        before, after = expected.get(key), now.get(key)
        if before is not None and after is not None and before.current == after.current \
                and before.desired == after.desired:
            continue
        step_id, resource, field = key
        rows.append(DriftRow(
            step_id=step_id, resource=resource, field=field,
            planned_from=before.current if before is not None else AT_DESIRED,
            now=after.current if after is not None else NOW_AT_DESIRED))
    # A finished change that the fresh diagnosis shows undone: the rebuilt plan has a row
    # for it again (its current is no longer the desired value we set).
    for c in rebuilt.changes:
        if c.step_id in done_steps and applied.get(_target(c)) == c.desired:
            rows.append(DriftRow(step_id=c.step_id, resource=c.resource, field=c.field,
                                 planned_from=c.desired, now=c.current, kind="reverted"))
    return rows


def rebuilt_plan(planned: Plan, rebuilt: Plan, done_steps: set[str],
                 drift: list[DriftRow]) -> Plan:
    """The plan the next gate shows: finished phases' rows as planned, the rest as
    diagnosed now, the drift listed; its digest is new, so an approval of the old plan
    cannot release it."""
    changes = ([c for c in planned.changes if c.step_id in done_steps]
               + [c for c in rebuilt.changes if c.step_id not in done_steps])
    not_applicable = ([n for n in planned.not_applicable if n.step_id in done_steps]
                      + [n for n in rebuilt.not_applicable if n.step_id not in done_steps])
    plan = Plan(changes=changes, problems=rebuilt.problems, warnings=rebuilt.warnings,
                not_applicable=not_applicable, drift=drift,
                rebuilt_from=planned.digest)
    plan.digest = plan.compute_digest()
    return plan


def describe_drift(drift: list[DriftRow], limit: int = 5) -> str:
    """One line per drift row (at most ``limit``), for notifications and reasons."""
    lines = [f"{d.resource} {d.field}: planned from {d.planned_from!s}, now {d.now!s}"
             + (" (a finished change was reverted)" if d.kind == "reverted" else "")
             for d in drift[:limit]]
    if len(drift) > limit:
        lines.append(f"... and {len(drift) - limit} more")
    return "; ".join(lines)
