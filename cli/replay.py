"""`runbook replay`: would the current workflow code still run these exported histories?

Run it before deploying a workflow change while runs wait at gates: a run in flight is
replayed by the new code when its next task arrives, and a command sequence that no longer
matches its history stalls it (nondeterminism fails the workflow task, not the run).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from google.protobuf import json_format
from rich.console import Console
from rich.text import Text
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Replayer, WorkflowRunner
from temporalio.workflow import NondeterminismError

from cli.client import CliError
from cli.history_file import history_from_file

COMPATIBLE, INCOMPATIBLE, UNREADABLE = "compatible", "INCOMPATIBLE", "unreadable"
EXPORT_HINT = "export it with `temporal workflow show -w ID --output json > FILE` or the UI's Download"
PATCH_HINT = ("the change to the command sequence needs workflow.patched(); see README "
              "'How the runbook is defined and changed'")
# Not nondeterminism: the current code fails its workflow task on this history (a bug
# raised during replay, or a workflow type no longer registered). Runs would stall alike.
TASK_FAILURE_HINT = ("the current code fails the workflow task on this history, so such runs "
                     "would stall after the deploy: fix the code (or register the workflow) first")
# What history_from_file raises for a file that is not a whole, parseable history.
_UNREADABLE_ERRORS = (OSError, ValueError, KeyError, TypeError, RecursionError, json_format.ParseError)
# The SDK renders a task failure as Rust debug text; its first `message: "…"` is the reason.
_FAILURE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_REASON_CHARS = 300


@dataclass
class ReplayOutcome:
    path: Path
    verdict: str
    workflow_type: str = ""
    workflow_id: str = ""
    reason: str = ""
    hint: str = ""


def default_workflows() -> list[type]:
    """What a worker process serves: the remediation worker's workflows and the lease keeper."""
    from workflows.lease_keeper import TargetLeaseWorkflow
    from worker import WORKFLOWS

    return [*WORKFLOWS, TargetLeaseWorkflow]


def history_files(paths: Sequence[Path]) -> list[Path]:
    """The files to replay: each file as given, each directory's *.json recursively, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.json") if p.is_file())
            if not found:
                raise CliError(f"no *.json history files under {path}", EXPORT_HINT, exit_code=2)
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CliError(f"--history-file {path}: no such file or directory",
                           f"check the path; {EXPORT_HINT}", exit_code=2)
    return list(dict.fromkeys(files))  # a file named twice (or inside a named directory) once


def _read(path: Path) -> WorkflowHistory | ReplayOutcome:
    try:
        return history_from_file(str(path))
    except _UNREADABLE_ERRORS as e:
        reason = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
        return ReplayOutcome(path, UNREADABLE, reason=f"not a Temporal history export ({reason[:_REASON_CHARS]})",
                             hint=EXPORT_HINT)


def _reason(failure: Exception) -> str:
    text = str(failure)
    found = _FAILURE_MESSAGE.search(text)
    if found:
        text = found.group(1).replace('\\"', '"').replace("\\n", " ")
    line = " ".join(text.split())
    return line if len(line) <= _REASON_CHARS else line[:_REASON_CHARS - 1] + "…"


@functools.cache
def _quiet_runtime() -> Runtime:
    # The SDK core logs every failed workflow task as a WARN line; the result carries it.
    return Runtime(telemetry=TelemetryConfig(logging=None))


@contextmanager
def _sdk_logging_off() -> Iterator[None]:
    # Replayed workflow code and the SDK log failures with tracebacks (a run that failed
    # for real logs its activity errors again); the verdict lines say what matters.
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


async def replay_histories(files: Sequence[Path], workflows: Sequence[type] | None = None,
                           workflow_runner: WorkflowRunner | None = None) -> list[ReplayOutcome]:
    """Replay each file against ``workflows`` (default: what the worker registers).

    A run that itself failed (rolled back, rejected) replays fine: only a replay failure,
    i.e. ``WorkflowReplayResult.replay_failure``, makes a history incompatible.
    """
    options = {"workflow_runner": workflow_runner} if workflow_runner is not None else {}
    replayer = Replayer(workflows=list(workflows or default_workflows()),
                        data_converter=pydantic_data_converter, runtime=_quiet_runtime(), **options)
    outcomes: list[ReplayOutcome] = []
    for path in files:
        history = _read(path)
        if isinstance(history, ReplayOutcome):
            outcomes.append(history)
            continue
        started = history.events[0].workflow_execution_started_event_attributes
        # Exports often lack the id (history_from_file then labels it by file name): show it
        # only when the history records it.
        outcome = ReplayOutcome(path, COMPATIBLE, started.workflow_type.name, started.workflow_id)
        with _sdk_logging_off():
            try:
                result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
            except RuntimeError as e:  # replay failures are returned: this is the code itself,
                # e.g. the sandbox's validation run of a workflow class raised
                cause = f" ({type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
                raise CliError(f"the current workflow code does not load: {e}{cause}",
                               "fix the workflow code first (`./dev test tests/workflow` shows where)") from e
        if result.replay_failure is not None:
            outcome.verdict, outcome.reason = INCOMPATIBLE, _reason(result.replay_failure)
            nondeterministic = isinstance(result.replay_failure, NondeterminismError)
            outcome.hint = PATCH_HINT if nondeterministic else TASK_FAILURE_HINT
        outcomes.append(outcome)
    return outcomes


def summary(outcomes: Sequence[ReplayOutcome]) -> str:
    count = {v: sum(o.verdict == v for o in outcomes) for v in (COMPATIBLE, INCOMPATIBLE, UNREADABLE)}
    return (f"{count[COMPATIBLE]} compatible, {count[INCOMPATIBLE]} incompatible, "
            f"{count[UNREADABLE]} unreadable")


def render(outcome: ReplayOutcome) -> list[Text]:
    style = {COMPATIBLE: "green", INCOMPATIBLE: "bold red", UNREADABLE: "bold yellow"}[outcome.verdict]
    head = Text.assemble((f"{outcome.verdict:<12}", style), f" {outcome.path}")
    if outcome.workflow_type:
        head.append(f"  {outcome.workflow_type} {outcome.workflow_id or '(id not in the export)'}")
    lines = [head]
    if outcome.reason:
        lines.append(Text(f"  reason: {outcome.reason}"))
    if outcome.hint:
        lines.append(Text(f"  next: {outcome.hint}", style="yellow"))
    return lines


def replay_and_report(paths: Sequence[Path], console: Console, workflows: Sequence[type] | None = None,
                      workflow_runner: WorkflowRunner | None = None) -> int:
    """Print one verdict per history and a summary; 0 only when every one is compatible."""
    outcomes = asyncio.run(replay_histories(history_files(paths), workflows, workflow_runner))
    for outcome in outcomes:
        for line in render(outcome):
            console.print(line)
    console.print(summary(outcomes))
    return 0 if all(o.verdict == COMPATIBLE for o in outcomes) else 1
