"""`runbook decide`, `runbook pause`, `runbook resume`: the operator's controls on a run.

Each sends the workflow's validated update (runbook/messages.py), so a refusal (wrong
gate, an option the step does not offer, nothing to resume) is shown at once with the
reason and where the run is.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import typer
from rich.console import Console
from rich.text import Text

from cli import actions
from runbook import messages as m
from runbook.status import PauseRecord


def register(app: typer.Typer, runs: Callable[..., Any], out: Console) -> None:
    @app.command()
    @runs
    def decide(ctx: typer.Context, workflow_id: str = typer.Argument(...),
               gate: str = typer.Option(..., help="the decision gate, decide-<step> (see `runbook status`)"),
               decision: str = typer.Option(..., help="retry | skip | rollback"),
               by: str = typer.Option(..., help="your name, as recorded in the audit"),
               reason: str = typer.Option("", help="why; required to skip, recorded in history")) -> None:
        """Answer a decision gate after a step failed: retry it, skip it (skippable steps
        only) or roll back."""
        payload = m.FailureDecisionRequest.model_validate(
            {"gate": gate, "decision": decision, "by": by, "reason": reason})
        ack = asyncio.run(actions.send_update(ctx.obj, workflow_id, m.UPDATE_DECIDE, payload,
                                              m.GateAck, "decide"))
        out.print(Text.assemble(("decided: ", "bold green"),
                                f"{decision} on {ack.gate}; follow it with "
                                f"`runbook status {workflow_id} --watch`"))

    @app.command()
    @runs
    def pause(ctx: typer.Context, workflow_id: str = typer.Argument(...),
              by: str = typer.Option(..., help="who pauses"),
              reason: str = typer.Option("", help="why; shown in status and the UI")) -> None:
        """Pause a run: it finishes the step in flight, then holds before the next one."""
        rec = _send_pause(ctx, workflow_id, m.UPDATE_PAUSE, by, reason, "pause")
        when = "now" if rec.held_at else "after the step in flight"
        clock = ("deadlines are frozen while it holds" if rec.freeze_deadlines
                 else "budgets and gate deadlines keep running")
        out.print(Text.assemble(("paused: ", "bold yellow"), f"{workflow_id} holds {when}; "
                                f"{clock}. Resume with `runbook resume {workflow_id} --by <you>`"))

    @app.command()
    @runs
    def resume(ctx: typer.Context, workflow_id: str = typer.Argument(...),
               by: str = typer.Option(..., help="who resumes"),
               reason: str = typer.Option("", help="why; recorded in history")) -> None:
        """Resume a paused run."""
        rec = _send_pause(ctx, workflow_id, m.UPDATE_RESUME, by, reason, "resume")
        held = (rec.resumed_at - rec.held_at).total_seconds() if rec.held_at and rec.resumed_at else 0
        out.print(Text.assemble(("resumed: ", "bold green"),
                                f"{workflow_id} goes on after holding {held:.0f}s"))


def _send_pause(ctx: typer.Context, workflow_id: str, update: str, by: str, reason: str,
                verb: str) -> PauseRecord:
    """Pause and resume carry the same message and answer with the pause record."""
    return asyncio.run(actions.send_update(ctx.obj, workflow_id, update,
                                           m.PauseRequest(by=by, reason=reason), PauseRecord, verb))
