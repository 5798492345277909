"""`runbook approve`, `reject`, `abort`, `decide`, `pause`, `resume`: acting on a run.

Two paths, and every command says which it took:
- logged in (`runbook login`): through the approval service, which proves who you are to
  the run with a signed envelope (verified). The service records the logged-in identity;
  naming someone else with --approver/--by is refused.
- otherwise, or with --direct: the workflow's validated update straight to Temporal, with
  the identity you name (claimed). A run that requires verified identities refuses it.
Either way a refusal (wrong gate, an option the step does not offer, nothing to resume)
is shown at once with the run's reason.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli import actions
from cli.client import CliError, Settings
from cli.login import StoredLogin, check_named, route_note, service_login
from cli.diffs import format_value
from runbook import messages as m
from runbook.status import GateRecord, PauseRecord, RunStatus

Direct = typer.Option(False, "--direct", help="send the update straight to the run with the "
                      "identity you name (claimed, not verified), even when logged in")


def _who(login: StoredLogin | None, option: str, named: str | None, verb: str) -> str:
    """The identity to record: the login's, or the one named for a direct update."""
    if login is not None:
        check_named(login, option, named)
        return login.identity
    if named is None:
        raise CliError(f"{option}: required for a direct update (who {verb}s, as recorded in "
                       "the audit)", f"pass {option} <you>, or `runbook login` to {verb} as a "
                       "verified identity")
    return named


def register(app: typer.Typer, runs: Callable[..., Any], out: Console, err: Console) -> None:
    def say_route(login: StoredLogin | None) -> None:
        err.print(route_note(login))

    def print_ack(ack: m.GateAck, verb: str) -> None:
        out.print(Text.assemble((f"{verb}: ", "bold green"), f"gate {ack.gate} — {ack.approvals} of "
                                f"{ack.required} approvals, gate is now {ack.gate_status}"))

    @app.command()
    @runs
    def approve(ctx: typer.Context, workflow_id: str = typer.Argument(...),
                gate: str = typer.Option(..., help="phase-1 … phase-4 or cleanup-revisions"),
                approver: Optional[str] = typer.Option(
                    None, help="your name, as recorded in the audit (logged in: your login)"),
                comment: str = typer.Option("", help="why; recorded in history"),
                digest: Optional[str] = typer.Option(None, help="plan digest you reviewed (from "
                                                     "`runbook status`)"),
                yes: bool = typer.Option(False, "--yes", "-y", help="do not ask; logged in, this "
                                         "needs --digest"),
                signal: bool = typer.Option(False, "--signal", help="send the `approve` signal "
                                            "instead of the validated update (direct)"),
                direct: bool = Direct) -> None:
        """Approve a gate. Shows at once whether it was accepted, or why not."""
        login = service_login(direct or signal)
        who = _who(login, "--approver", approver, "approve")
        if login is not None:
            if digest is None:
                if yes:
                    raise CliError("pass --digest: through the approval service you approve the "
                                   "plan you reviewed, named by its digest",
                                   f"see the plan and its digest with `runbook status {workflow_id}`")
                digest = _confirm_plan(ctx.obj, workflow_id, gate, login.identity, out)
            say_route(login)
            with login.client() as service:
                ack = service.act(workflow_id, "approve",
                                  {"gate": gate, "plan_digest": digest, "comment": comment})
            print_ack(m.GateAck.model_validate(ack), "accepted")
            return
        payload = m.GateApproval(gate=gate, approver=who, comment=comment, plan_digest=digest)
        say_route(None)
        if signal:
            asyncio.run(actions.send_signal(ctx.obj, workflow_id, m.SIGNAL_APPROVE, payload))
            out.print(f"approve signal sent for gate {gate}; signals are not validated: check "
                      f"`runbook status {workflow_id}`")
            return
        print_ack(asyncio.run(actions.send_gate_update(ctx.obj, workflow_id, m.UPDATE_APPROVE,
                                                       payload)), "accepted")

    @app.command()
    @runs
    def reject(ctx: typer.Context, workflow_id: str = typer.Argument(...),
               gate: str = typer.Option(...),
               approver: Optional[str] = typer.Option(None, help="who rejects (logged in: your login)"),
               reason: str = typer.Option("", help="why; recorded in history"),
               signal: bool = typer.Option(False, "--signal", help="send the `reject` signal instead"),
               direct: bool = Direct) -> None:
        """Reject a gate: the run stops and rolls back what it changed."""
        login = service_login(direct or signal)
        who = _who(login, "--approver", approver, "reject")
        say_route(login)
        if login is not None:
            with login.client() as service:
                ack = service.act(workflow_id, "reject", {"gate": gate, "reason": reason})
            print_ack(m.GateAck.model_validate(ack), "rejected")
            return
        payload = m.GateRejection(gate=gate, approver=who, reason=reason)
        if signal:
            asyncio.run(actions.send_signal(ctx.obj, workflow_id, m.SIGNAL_REJECT, payload))
            out.print(f"reject signal sent for gate {gate}; check `runbook status {workflow_id}`")
            return
        print_ack(asyncio.run(actions.send_gate_update(ctx.obj, workflow_id, m.UPDATE_REJECT,
                                                       payload)), "rejected")

    @app.command()
    @runs
    def abort(ctx: typer.Context, workflow_id: str = typer.Argument(...),
              by: Optional[str] = typer.Option(None, help="who aborts (logged in: your login)"),
              reason: str = typer.Option(..., help="why"), direct: bool = Direct) -> None:
        """Abort a run: it rolls back reversible changes and stops."""
        login = service_login(direct)
        who = _who(login, "--by", by, "abort")
        say_route(login)
        if login is not None:
            with login.client() as service:
                service.act(workflow_id, "abort", {"reason": reason})
        else:
            asyncio.run(actions.abort_direct(ctx.obj, workflow_id,
                                             m.AbortRequest(by=who, reason=reason)))
        out.print(f"abort sent to {workflow_id}; follow the rollback with "
                  f"`runbook status {workflow_id} --watch`")

    @app.command()
    @runs
    def decide(ctx: typer.Context, workflow_id: str = typer.Argument(...),
               gate: str = typer.Option(..., help="the decision gate, decide-<step> (see `runbook status`)"),
               decision: str = typer.Option(..., help="retry | skip | rollback"),
               by: Optional[str] = typer.Option(None, help="your name, as recorded in the audit "
                                                "(logged in: your login)"),
               reason: str = typer.Option("", help="why; required to skip, recorded in history"),
               direct: bool = Direct) -> None:
        """Answer a decision gate after a step failed: retry it, skip it (skippable steps
        only) or roll back."""
        login = service_login(direct)
        who = _who(login, "--by", by, "decide")
        if login is not None:
            say_route(login)
            with login.client() as service:
                ack = m.GateAck.model_validate(service.act(
                    workflow_id, "decide", {"gate": gate, "decision": decision, "reason": reason}))
        else:
            payload = m.FailureDecisionRequest.model_validate(
                {"gate": gate, "decision": decision, "by": who, "reason": reason})
            say_route(None)
            ack = asyncio.run(actions.send_update(ctx.obj, workflow_id, m.UPDATE_DECIDE, payload,
                                                  m.GateAck, "decide"))
        out.print(Text.assemble(("decided: ", "bold green"),
                                f"{decision} on {ack.gate}; follow it with "
                                f"`runbook status {workflow_id} --watch`"))

    @app.command()
    @runs
    def pause(ctx: typer.Context, workflow_id: str = typer.Argument(...),
              by: Optional[str] = typer.Option(None, help="who pauses (logged in: your login)"),
              reason: str = typer.Option("", help="why; shown in status and the UI"),
              direct: bool = Direct) -> None:
        """Pause a run: it finishes the step in flight, then holds before the next one."""
        rec = _send_pause(ctx, workflow_id, "pause", by, reason, direct, say_route)
        when = "now" if rec.held_at else "after the step in flight"
        clock = ("deadlines are frozen while it holds" if rec.freeze_deadlines
                 else "budgets and gate deadlines keep running")
        out.print(Text.assemble(("paused: ", "bold yellow"), f"{workflow_id} holds {when}; "
                                f"{clock}. Resume with `runbook resume {workflow_id}`"))

    @app.command()
    @runs
    def resume(ctx: typer.Context, workflow_id: str = typer.Argument(...),
               by: Optional[str] = typer.Option(None, help="who resumes (logged in: your login)"),
               reason: str = typer.Option("", help="why; recorded in history"),
               direct: bool = Direct) -> None:
        """Resume a paused run."""
        rec = _send_pause(ctx, workflow_id, "resume", by, reason, direct, say_route)
        held = (rec.resumed_at - rec.held_at).total_seconds() if rec.held_at and rec.resumed_at else 0
        out.print(Text.assemble(("resumed: ", "bold green"),
                                f"{workflow_id} goes on after holding {held:.0f}s"))


def _send_pause(ctx: typer.Context, workflow_id: str, verb: str, by: str | None, reason: str,
                direct: bool, say_route: Callable[[StoredLogin | None], None]) -> PauseRecord:
    """Pause and resume carry the same message and answer with the pause record."""
    login = service_login(direct)
    who = _who(login, "--by", by, verb)
    say_route(login)
    if login is not None:
        with login.client() as service:
            return PauseRecord.model_validate(service.act(workflow_id, verb, {"reason": reason}))
    update = m.UPDATE_PAUSE if verb == "pause" else m.UPDATE_RESUME
    return asyncio.run(actions.send_update(ctx.obj, workflow_id, update,
                                           m.PauseRequest(by=who, reason=reason), PauseRecord, verb))


# --- approving without --digest: show what is approved, then ask -----------------------


def _gate_of(st: RunStatus, gate: str, workflow_id: str) -> GateRecord:
    if st.pending_gate is not None and st.pending_gate.id == gate:
        return st.pending_gate
    pending = st.pending_gate.id if st.pending_gate else "none"
    raise CliError(f"gate {gate} is not waiting for approval in run {workflow_id} (pending gate: "
                   f"{pending}; run state {st.state.value})",
                   f"see the run with `runbook status {workflow_id}`")


def _confirm_plan(settings: Settings, workflow_id: str, gate: str, identity: str,
                  out: Console) -> str:
    """Show the plan rows the gate releases and the plan's digest; the digest once the
    person says yes. The digest is what the approval is bound to, so it is the one shown."""
    st = asyncio.run(actions.get_status(settings, workflow_id)).status
    if st is None:
        raise CliError(f"run {workflow_id} has no live status to approve against",
                       f"see the run with `runbook status {workflow_id}`")
    record = _gate_of(st, gate, workflow_id)
    if st.plan is None or not st.plan.digest:
        raise CliError(f"run {workflow_id} has no plan yet, so there is nothing to approve",
                       f"wait for the diagnosis: `runbook status {workflow_id} --watch`")
    phase_of = {s.id: s.phase for s in st.steps}
    rows = [c for c in st.plan.changes
            if record.phase is None or phase_of.get(c.step_id) == record.phase]
    table = Table(title=f"Gate {record.id}: {record.title} — the changes it releases")
    for col in ("step", "resource", "field", "current", "desired", "reversible"):
        table.add_column(col, overflow="fold")
    for c in rows:
        table.add_row(c.step_id, c.resource, c.field, format_value(c.current),
                      format_value(c.desired), "yes" if c.reversible else "NO (irreversible)")
    out.print(table if rows else Text(f"Gate {record.id} releases no planned changes."))
    out.print(Text.assemble("Plan digest: ", (st.plan.digest, "bold"), "  (--digest "
                            f"{st.plan.digest} approves exactly this plan without asking)"))
    if not typer.confirm(f"Approve gate {gate} of plan {st.plan.digest} as {identity}?",
                         default=False):
        raise CliError("not approved", f"approve later with `runbook approve {workflow_id} "
                       f"--gate {gate} --digest {st.plan.digest}`")
    return st.plan.digest
