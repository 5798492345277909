"""`runbook`: start, plan, follow, approve, abort, list and audit remediation runs."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from opentelemetry import trace
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli import actions, login, operator_commands
from cli.client import CliError, Settings
from cli.leases import render_conflicts, request_conflicts
from cli.render import fmt_time, render_plan, render_report, render_status
from cli.request_input import build_request
from cli.watch_live import follow
from observability.logs import LogConfigError, configure_logging
from observability.tracing import TracingConfigError, configure_tracing
from runbook.changes_in_force import ABANDONED
from runbook.status import RunState

class _App(typer.Typer):
    """Exit without interpreter teardown once the command is done.

    The Temporal client's Rust threads can outlive the event loop; during CPython
    finalization they sometimes abort the process ("Fatal Python error:
    PyGILState_Release", exit 134) after the command already succeeded
    (temporalio/sdk-python#300, reproduced here ~1 run in 15). Flushing and calling
    os._exit keeps the exit code the command chose.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        code = 0
        tracing = None
        try:
            # Quiet by default (WARNING): the CLI's output is its own; LOG_LEVEL raises it.
            configure_logging("runbook-cli", default_level="WARNING")
            # OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set: `runbook start`'s span
            # then heads the run's trace, down to each step on the worker.
            tracing = configure_tracing("runbook-cli")
            super().__call__(*args, **kwargs)
        except (LogConfigError, TracingConfigError) as e:
            print(f"error: {e}", file=sys.stderr)
            code = 2
        except SystemExit as e:
            if isinstance(e.code, int):
                code = e.code
            elif e.code is not None:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        if tracing is not None:
            tracing.shutdown()  # os._exit skips atexit: send the batched spans now
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


app = _App(name="runbook", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Durable remediation runbooks for Google Cloud, on Temporal.")


def _console(stderr: bool = False) -> Console:
    # soft_wrap: hints hold commands to copy; a hard line break would corrupt them.
    # Piped output (logs, CI, `| less`) gets a wide page instead of rich's 80 columns.
    c = Console(stderr=stderr, soft_wrap=True)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c = Console(stderr=stderr, soft_wrap=True, width=160)
    return c


out = _console()
err = _console(stderr=True)


_DEFAULT = Settings()


@app.callback()
def _global(
    ctx: typer.Context,
    address: str = typer.Option(_DEFAULT.address, envvar=Settings.ENV["address"],
                                help="Temporal frontend host:port"),
    namespace: str = typer.Option(_DEFAULT.namespace, envvar=Settings.ENV["namespace"]),
    task_queue: str = typer.Option(_DEFAULT.task_queue, envvar=Settings.ENV["task_queue"]),
    ui_url: str = typer.Option(_DEFAULT.ui_url, envvar=Settings.ENV["ui_url"],
                               help="Temporal Web UI base URL, for links"),
) -> None:
    ctx.obj = Settings(address=address, namespace=namespace, task_queue=task_queue, ui_url=ui_url)


def _runs(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async command body; CliError becomes 'error: …' plus the next step.

    Each command is one span, ``runbook <command>`` (a no-op unless tracing is configured):
    the client's interceptors carry it to the workflow and from there to every step, and
    the approval service continues it (observability/tracing.py)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        attributes = {"runbook.workflow_id": kwargs["workflow_id"]} if kwargs.get("workflow_id") else {}
        try:
            with trace.get_tracer("runbook-cli").start_as_current_span(
                    f"runbook {fn.__name__.replace('_', '-')}", attributes=attributes):
                return fn(*args, **kwargs)
        except CliError as e:
            err.print(Text(f"error: {e.message}", style="bold red"))
            if e.hint:
                err.print(Text(f"next: {e.hint}", style="yellow"))
            raise typer.Exit(e.exit_code)
        except ValidationError as e:  # a message payload built from flags (GateApproval, ...)
            for problem in e.errors(include_url=False):
                field = ".".join(str(p) for p in problem["loc"])
                err.print(Text(f"error: --{field.replace('_', '-')}: {problem['msg']}", style="bold red"))
            err.print(Text("next: fix the option(s) named above and run the command again", style="yellow"))
            raise typer.Exit(1)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130)

    return wrapper


# Request options shared by `start` and `plan`.
RequestFile = typer.Option(None, "--request-file", "-f", exists=False, dir_okay=False,
                           help="JSON request (every field optional; {} runs the default runbook)")
Incident = typer.Option(None, help="incident id (default 1278)")
RequestedBy = typer.Option(None, help="who asks for the run (default: your login); they may not approve it")
Project = typer.Option(None, help="GCP project (targets.project)")
Region = typer.Option(None, help="GCP region (targets.region)")
Sets = typer.Option(None, "--set", help="override any request field: a.b.c=VALUE (VALUE as JSON); repeatable")


@app.command()
@_runs
def start(ctx: typer.Context, request_file: Optional[Path] = RequestFile, incident: Optional[str] = Incident,
          requested_by: Optional[str] = RequestedBy, project: Optional[str] = Project,
          region: Optional[str] = Region, set_: Optional[list[str]] = Sets,
          as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
          direct: bool = typer.Option(False, "--direct", help="start it straight on Temporal with "
                                      "the requester you name (claimed), even when logged in")) -> None:
    """Start a remediation run (validates the request locally first)."""
    settings: Settings = ctx.obj
    service = login.service_login(direct)
    if service is not None:  # the service records the logged-in identity as the requester
        login.check_named(service, "--requested-by", requested_by)
        requested_by = service.identity
    request = build_request(request_file=request_file, incident=incident, requested_by=requested_by,
                            project=project, region=region, sets=set_)
    span = trace.get_current_span()  # `runbook start` (_runs): the root of the run's trace
    span.set_attribute("runbook.incident", request.incident_id)
    if conflicts := asyncio.run(request_conflicts(settings, request)):
        err.print(render_conflicts(conflicts))
        if request.lease.policy == "refuse":
            # The lease keeper would refuse the run at once; say so before starting it.
            raise CliError("another run holds some of this run's targets (lease policy refuse)",
                           "wait for it to end (`runbook status <id> --watch`), or queue behind it "
                           "with `--set lease.policy=wait`")
        err.print(Text("lease policy wait: the run will queue behind them", style="yellow"))
    err.print(login.route_note(service))
    started = asyncio.run(actions.start_run(settings, request, service))
    span.set_attribute("runbook.workflow_id", started.workflow_id)
    url = settings.workflow_url(started.workflow_id)
    if as_json:
        print(json.dumps({"workflow_id": started.workflow_id, "run_id": started.run_id, "url": url,
                          "worker_seen": started.worker_seen, "requested_by": request.requested_by,
                          "verified": service is not None}))
        return
    out.print(Text.assemble("Started run ", (started.workflow_id, "bold green")))
    out.print(f"  requested by {request.requested_by or 'unknown'} "
              f"({'verified' if service else 'claimed'})")
    out.print(f"  UI:     {url}")
    out.print(f"  follow: runbook status {started.workflow_id} --watch")
    approver = "--digest <digest>" if service else "--approver <you>"
    out.print(f"  approve the plan: runbook approve {started.workflow_id} --gate phase-1 {approver}")
    if not started.worker_seen:
        err.print(Text(f"warning: no worker is polling task queue {settings.task_queue!r}; the run "
                       "will wait until one starts (`./dev up` or `python worker.py`)",
                       style="yellow"))


@app.command()
@_runs
def plan(ctx: typer.Context, request_file: Optional[Path] = RequestFile, incident: Optional[str] = Incident,
         requested_by: Optional[str] = RequestedBy, project: Optional[str] = Project,
         region: Optional[str] = Region, set_: Optional[list[str]] = Sets,
         timeout: float = typer.Option(120, help="seconds to wait for the diagnosis"),
         as_json: bool = typer.Option(False, "--json", help="print the plan as JSON")) -> None:
    """Diagnose read-only and print the plan; exits 1 when preflight finds problems."""
    request = build_request(request_file=request_file, incident=incident, requested_by=requested_by,
                            project=project, region=region, sets=set_)
    try:  # read-only: a keeper that cannot be asked is a warning here, not an error
        conflicts = asyncio.run(request_conflicts(ctx.obj, request))
    except CliError as e:
        conflicts = []
        err.print(Text(f"warning: {e.message}; {e.hint}", style="yellow"))
    if conflicts:
        err.print(render_conflicts(conflicts))
    result = asyncio.run(actions.run_plan(ctx.obj, request, timeout))
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        out.print(render_plan(result))
    if result.problems:
        if not as_json:
            err.print(Text("next: fix the request fields named above (or the resources), then run "
                           "`runbook plan` again", style="yellow"))
        raise typer.Exit(1)


@app.command()
@_runs
def status(ctx: typer.Context, workflow_id: str = typer.Argument(..., help="run id, e.g. remediation-1278-ab12cd"),
           watch: bool = typer.Option(False, "--watch", "-w", help="follow live until the run ends"),
           interval: float = typer.Option(1.0, help="seconds between refreshes with --watch"),
           as_json: bool = typer.Option(False, "--json", help="print the status query result as JSON")) -> None:
    """Show a run: state, pending gate and countdowns, phases, steps, escalations, rollback."""
    settings: Settings = ctx.obj
    if watch:
        final = asyncio.run(follow(settings, workflow_id, interval, out))
        out.print(f"run ended: {final.value if final else 'closed'}  "
                  f"(audit: runbook audit {workflow_id})")
        # Scripts can wait on a run: 0 only when it succeeded.
        raise typer.Exit(0 if final == RunState.SUCCEEDED else 2)
    view = asyncio.run(actions.get_status(settings, workflow_id))
    if as_json:
        payload = view.status or view.report
        print(payload.model_dump_json(indent=2) if payload else json.dumps({"failure": view.failure}))
        return
    if view.description.status and view.description.status.name in ABANDONED:
        # Terminated or timed out: no code ran its rollback. Say so first, with what it left.
        from cli.in_force import render_in_force
        from cli.rollback import in_force_of

        out.print(render_in_force(*asyncio.run(in_force_of(settings, workflow_id))))
        out.print(Text("Its last recorded status, as it was when Temporal closed it:", "dim"))
    if view.status is not None:
        out.print(render_status(workflow_id, view.status))
    elif view.report is not None:
        out.print(render_report(workflow_id, view.report))
    else:
        execution = view.description.status.name if view.description.status else "?"
        out.print(f"run {workflow_id} is {execution}: {view.failure or 'no status available'}")
    out.print(f"UI: {settings.workflow_url(workflow_id)}")


@app.command()
@_runs
def rollback(ctx: typer.Context,
             workflow_id: str = typer.Argument(..., help="the terminated (or timed-out) run's id"),
             by: Optional[str] = typer.Option(None, "--by", help="who asks (default: your login)"),
             wait: bool = typer.Option(False, "--wait", help="wait for it and print its report")) -> None:
    """Undo what a closed run left in force (e.g. after Terminate): a compensation-only run."""
    from cli.client import login_name
    from cli.in_force import render_rollback_report
    from cli.rollback import run_rollback
    from runbook.rollback import rollback_request_problems

    settings: Settings = ctx.obj
    req, problems = rollback_request_problems(
        {"source_workflow_id": workflow_id, "requested_by": login_name() if by is None else by})
    if req is None:
        names = {"source_workflow_id": "WORKFLOW_ID", "requested_by": "--by"}
        raise CliError("; ".join(f"{names.get(p.field, p.field)}: {p.reason}" for p in problems),
                       "e.g. `runbook rollback remediation-1278-ab12cd --by <you>` (ids: `runbook list`)")
    run = asyncio.run(run_rollback(settings, req, wait))
    src = run.source
    out.print(Text.assemble("Started rollback ", (run.workflow_id, "bold green"),
                            f" of {req.source_workflow_id} ({src.closed_as}): {len(src.changes)} change(s) "
                            f"in force, {sum(c.reversible for c in src.changes)} reversible, "
                            f"{len(src.in_flight)} in flight (unknown)"))
    out.print(f"  UI:     {settings.workflow_url(run.workflow_id)}")
    if not run.worker_seen:
        err.print(Text(f"warning: no worker is polling task queue {settings.task_queue!r}; the rollback "
                       "will wait until one starts (`./dev up` or `python worker.py`)", style="yellow"))
    if run.report is None:
        out.print(f"  report: `temporal workflow result -w {run.workflow_id}` (or run with --wait)")
        return
    out.print(render_rollback_report(run.report))
    if run.incomplete:
        raise CliError(f"rollback incomplete: {len(run.report.failed)} change(s) could not be undone",
                       "fix the cause shown above, then run `runbook rollback "
                       f"{req.source_workflow_id}` again (undos restore the recorded state: safe to repeat)")


MAX_LIST_LIMIT = 1000


@app.command("list")
@_runs
def list_(ctx: typer.Context, incident: Optional[str] = typer.Option(None, help="only this incident"),
          state: Optional[str] = typer.Option(None, help="only this state, e.g. AWAITING_APPROVAL"),
          limit: int = typer.Option(50, help=f"how many runs to show (1-{MAX_LIST_LIMIT})"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """List runs (newest first) using the RemediationIncident/State/Phase search attributes."""
    if not 1 <= limit <= MAX_LIST_LIMIT:
        # The server reads 0 or a negative limit as "no limit": refuse rather than list everything.
        raise CliError(f"--limit {limit} is out of range: give 1 to {MAX_LIST_LIMIT}",
                       "e.g. runbook list --limit 20", exit_code=2)
    rows = asyncio.run(actions.list_runs(ctx.obj, incident, state, limit))
    if as_json:
        print(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        out.print("no runs match (runs appear here a second or two after they start)")
        return
    t = Table(title=f"Remediation runs ({len(rows)})")
    t.add_column("workflow id", no_wrap=True)
    for col in ("incident", "state", "phase", "execution", "started"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["workflow_id"], r["incident"] or "", r["state"] or "",
                  str(r["phase"] or ""), r["execution"], fmt_time(r["started"]))
    out.print(t)


@app.command()
@_runs
def audit(ctx: typer.Context, workflow_id: Optional[str] = typer.Argument(None, help="run id (live history)"),
          history_file: Optional[Path] = typer.Option(None, help="exported history: "
                                                      "`temporal workflow show -w ID --output json > F`"),
          fmt: str = typer.Option("markdown", "--format", help="markdown (or md) | json | html"),
          output: Optional[Path] = typer.Option(None, "--output", "-o", help="write here instead of stdout")) -> None:
    """Audit a run from its event history: who, what, when, and the outcome."""
    from google.protobuf import json_format

    from cli.audit import build_audit
    from cli.history_file import history_from_file
    from cli.audit_render import RENDERERS

    fmt = fmt.lower()
    if fmt not in RENDERERS:
        raise CliError(f"unknown format {fmt!r}", "use --format markdown (or md), json or html")
    if history_file is not None:
        if not history_file.is_file():
            raise CliError(f"history file {history_file} does not exist",
                           "export it with `temporal workflow show -w ID --output json > FILE`")
        try:
            history = history_from_file(str(history_file), workflow_id)
        except (ValueError, KeyError, TypeError, json_format.ParseError) as e:
            raise CliError(f"{history_file} is not a Temporal history export ({e})",
                           "export it with `temporal workflow show -w ID --output json > FILE`") from e
        report = build_audit(history, source=f"history file {history_file}")
    elif workflow_id:
        report = build_audit(asyncio.run(actions.fetch_history(ctx.obj, workflow_id)))
    else:
        raise CliError("give a run id or --history-file", "e.g. `runbook audit remediation-1278-ab12cd`")
    text = RENDERERS[fmt](report)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        out.print(f"audit written to {output}")


@app.command()
@_runs
def replay(history_file: list[Path] = typer.Option(..., "--history-file", help="exported history "
                                                   "(`temporal workflow show -w ID --output json > F`) "
                                                   "or a directory of them; repeatable")) -> None:
    """Replay exported histories against the current workflow code: safe to deploy?"""
    from cli.replay import replay_and_report

    raise typer.Exit(replay_and_report(history_file, out))


# approve, reject, abort, decide, pause, resume (cli/operator_commands.py)
operator_commands.register(app, _runs, out, err)
# login, logout, whoami (cli/login.py)
login.register(app, _runs, out)


if __name__ == "__main__":
    app()
