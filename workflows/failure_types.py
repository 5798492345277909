"""Which exceptions fail a run rather than its workflow task.

A plain bug escaping the workflow code (a TypeError, a KeyError, a pydantic
ValidationError, ...) would otherwise leave the workflow task retrying forever, which
looks like a hang to the on-call: those fail the run, loudly.

Nondeterminism must NOT be among them. Listing ``Exception`` would include
``NondeterminismError``, and the SDK then asks core to *fail the workflow* on
nondeterminism: a deploy that breaks replay would end every run in flight at once, with
no rollback and its changes left in force, and the Replayer in CI would hang instead of
reporting the break. Left out, nondeterminism fails only the workflow task, which is
retried until a compatible worker is deployed: the run resumes where it was.
"""

from __future__ import annotations

BUG_EXCEPTION_TYPES: list[type[BaseException]] = [
    ArithmeticError, AssertionError, AttributeError, LookupError, NameError, RuntimeError,
    TypeError, ValueError,
]
