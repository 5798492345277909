"""``python -m devstack up``: run the whole local stack in the foreground until Ctrl-C.
``python -m devstack keys``: make an approval envelope key pair for a team deployment."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sys
from pathlib import Path

from cli.client import Settings
from devstack.procs import StackError
from devstack.stack import (
    IDENTITIES,
    PUBLIC_KEYS_FILE,
    SIGNING_KEY_FILE,
    Stack,
    StackConfig,
    find_repo_root,
)
from devstack.supervisor import Supervisor


class _Stop(Exception):
    """Raised from the SIGTERM/SIGHUP handler so the same cleanup path as Ctrl-C runs."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m devstack",
                                description="Run the local remediation stack (Temporal dev "
                                            "server + Web UI, GCP simulator, approval service, "
                                            "worker).")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything, wait until healthy, stop on Ctrl-C")
    up.add_argument("--data-dir", type=Path, default=None,
                    help="where state and logs go (default: ./data in the repository)")
    up.add_argument("--temporal-port", type=int, default=7233)
    up.add_argument("--ui-port", type=int, default=8233)
    up.add_argument("--sim-port", type=int, default=8090)
    up.add_argument("--sim-speed", type=float, default=10.0,
                    help="simulated GCP time runs this many times faster (default 10)")
    up.add_argument("--namespace", default=StackConfig.namespace)
    up.add_argument("--task-queue", default=StackConfig.task_queue,
                    help=f"default: {StackConfig.task_queue}")
    up.add_argument("--app-url", default=None,
                    help="REMEDIATION_APP_URL for the worker's probes (default: the simulator)")
    up.add_argument("--backend", choices=["sim", "gcp"], default="sim",
                    help="sim: local GCP simulator (default); gcp: real Google Cloud via "
                         "Application Default Credentials, no simulator")
    up.add_argument("--approval-port", type=int, default=8095,
                    help="approval service port (default 8095)")
    up.add_argument("--metrics-port", type=int, default=9464,
                    help="the worker's Prometheus /metrics on 127.0.0.1 (default 9464; 0: off)")
    up.add_argument("--health-port", type=int, default=8081,
                    help="the worker's /healthz and /readyz on 127.0.0.1 (default 8081; 0: off)")
    up.add_argument("--identity", choices=list(IDENTITIES), default="verified",
                    help="verified (default): approvals count only through the approval service "
                         "(`runbook login --dev-user <you>`); claimed: the names people type, "
                         "to rehearse without logins")
    up.add_argument("--no-approval", action="store_true",
                    help="do not start the approval service")
    up.add_argument("--no-worker", action="store_true",
                    help="do not start the worker (e.g. to run it yourself in a debugger)")
    up.add_argument("--start-run", action="store_true",
                    help="also start a run once everything is up")
    up.add_argument("--incident", default="1278", help="incident id for --start-run")
    up.add_argument("--requested-by", default=None, help="requester for --start-run")
    keys = sub.add_parser("keys", help="make the approval service's envelope key pair (a "
                                       "private key and the worker's public keys file)")
    keys.add_argument("--dir", type=Path, default=Path("secrets"),
                      help="where to write them (default ./secrets)")
    keys.add_argument("--kid", default="runbook-1",
                      help="key id the worker knows the key by (RUNBOOK_APPROVAL_SIGNING_KID)")
    return p


def _config(args: argparse.Namespace) -> StackConfig:
    return StackConfig(root=find_repo_root(), data_dir=args.data_dir, temporal_port=args.temporal_port,
                       ui_port=args.ui_port, sim_port=args.sim_port, sim_speed=args.sim_speed,
                       namespace=args.namespace, task_queue=args.task_queue,
                       with_worker=not args.no_worker, app_url=args.app_url, backend=args.backend,
                       with_approval=not args.no_approval, approval_port=args.approval_port,
                       identity=args.identity, metrics_port=args.metrics_port,
                       health_port=args.health_port)


def _settings(cfg: StackConfig) -> Settings:
    """What a `runbook` command needs to reach this stack."""
    return Settings(address=cfg.temporal_address, namespace=cfg.namespace,
                    task_queue=cfg.task_queue, ui_url=cfg.ui_url)


def _start_run(cfg: StackConfig, incident: str, requested_by: str | None) -> None:
    from cli.actions import start_run
    from cli.client import login_name
    from cli.login import StoredLogin
    from cli.request_input import build_request
    from cli.service_client import ServiceClient

    settings = _settings(cfg)
    login = None
    if cfg.with_approval and cfg.identity == "verified":
        # A verified run needs a proven requester: start it through the service as
        # requested_by, with a token from the service's dev issuer.
        user = requested_by or login_name() or "devstack"
        with ServiceClient(cfg.approval_url) as anonymous:
            token = str(anonymous.dev_token(user)["id_token"])
        with ServiceClient(cfg.approval_url, token) as service:
            who = service.whoami()
        login = StoredLogin(service=cfg.approval_url, token=token, identity=who["identity"],
                            idp=who["idp"], expires_at=None)
        requested_by = login.identity
    request = build_request(incident=incident, requested_by=requested_by)
    started = asyncio.run(start_run(settings, request, login))
    how = (f"{login_command(cfg)} && runbook approve {started.workflow_id} --gate phase-1"
           if login else
           f"runbook approve {started.workflow_id} --gate phase-1 --approver <you>")
    print(f"started run {started.workflow_id} (requested by {request.requested_by})\n"
          f"  UI: {settings.workflow_url(started.workflow_id)}\n  approve the plan: {how}",
          flush=True)


def next_command(cfg: StackConfig) -> str:
    """`runbook start` reaching this stack: every setting that differs from the CLI's default
    is passed, else the run would go to a server, namespace or task queue nobody serves."""
    ours, default = _settings(cfg), Settings()
    # The CLI's default address, localhost:7233, reaches the stack on 127.0.0.1:7233.
    env = ("" if cfg.temporal_port == 7233
           else f"{Settings.ENV['address']}={shlex.quote(ours.address)} ")
    opts = "".join(f" --{field.replace('_', '-')} {shlex.quote(getattr(ours, field))}"
                   for field in ("ui_url", "namespace", "task_queue")
                   if getattr(ours, field) != getattr(default, field))
    return f"{env}runbook{opts} start --incident 1278"


def login_command(cfg: StackConfig) -> str:
    """`runbook login` reaching this stack's approval service (the CLI's default URL is
    the default stack's)."""
    from cli.login import DEFAULT_SERVICE_URL

    service = "" if cfg.approval_url == DEFAULT_SERVICE_URL else f" --service {cfg.approval_url}"
    return f"runbook login{service} --dev-user <you>"


def banner(cfg: StackConfig) -> str:
    # The `runbook` command lives in this virtual environment.
    in_venv = sys.prefix != sys.base_prefix
    steps = [f"source {Path(sys.prefix) / 'bin' / 'activate'}"] if in_venv else []
    verified = cfg.identity == "verified"
    if verified:
        steps.append(f"{login_command(cfg)}    # verified identity (dev issuer)")
    steps.append(next_command(cfg))
    steps.append("runbook approve <id> --gate phase-1 " + (
        "--digest <plan digest>    # logged in as someone else than the requester" if verified
        else "--approver <you>    # --identity claimed: the name you type counts"))
    service = (f"{cfg.approval_url}  (dev issuer: any name logs in; dev only)"
               if cfg.with_approval else "not started (--no-approval)")
    newline = "\n  "
    return f"""
Stack is up.
  Temporal Web UI : {cfg.ui_url}/namespaces/{cfg.namespace}/workflows
  Temporal gRPC   : {cfg.temporal_address}  (namespace {cfg.namespace}, task queue {cfg.task_queue})
  GCP             : {cfg.sim_endpoint if cfg.backend == "sim" else "real Google Cloud (backend gcp)"}
  Approval service: {service}
  Identity        : {cfg.identity}
  Worker metrics  : {f"http://127.0.0.1:{cfg.metrics_port}/metrics" if cfg.metrics_port else "off"}
  Worker health   : {f"http://127.0.0.1:{cfg.health_port}/readyz" if cfg.health_port else "off"}
  Logs            : {cfg.data / 'logs'}

Next, in another terminal:
  {newline.join(steps)}

A part that exits is restarted; this terminal says which.
Press Ctrl-C to stop everything."""


def up(args: argparse.Namespace) -> int:
    cfg = _config(args)

    def _raise_stop(signum, _frame):
        raise _Stop(signal.Signals(signum).name)

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler; be explicit so every stop path cleans up.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    stack = Stack(cfg, say=lambda m: print(m, flush=True))
    try:
        stack.start()
        print(banner(cfg), flush=True)
        if args.start_run:
            _start_run(cfg, args.incident, args.requested_by)
        # A part that exits is restarted (with backoff) instead of taking the stack down.
        Supervisor(stack, say=lambda m: print(m, flush=True)).watch()
    except StackError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Stop):  # Ctrl-C, SIGTERM, SIGHUP
        print("\nstopping…", flush=True)
        return 0
    except Exception as err:  # e.g. --start-run failed: still stop what we started
        hint = getattr(err, "hint", "")  # cli.client.CliError says what to do next
        print(f"\nerror: {err}" + (f"\nnext: {hint}" if hint else ""), file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C during shutdown must not leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        print("stopped.", flush=True)


def keys(args: argparse.Namespace) -> int:
    """A key pair for docker-compose's secrets (README: compose secrets). Refuses to
    overwrite: replacing a key the worker trusts would refuse every approval in flight."""
    from runbook.envelope import write_keypair

    private, public = args.dir / SIGNING_KEY_FILE, args.dir / PUBLIC_KEYS_FILE
    existing = [str(p) for p in (private, public) if p.exists()]
    if existing:
        print(f"error: {', '.join(existing)} already exist(s); choose another --dir (to rotate, "
              "add the new public key to the worker's keys file before signing with it)",
              file=sys.stderr)
        return 1
    args.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_keypair(private, public, args.kid)
    print(f"wrote {private} (private, mode 0600: the approval service's signing key)\n"
          f"wrote {public} (public keys, key id {args.kid}: the worker's)\n"
          f"set RUNBOOK_APPROVAL_SIGNING_KID={args.kid} for the approval service")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        return up(args)
    if args.command == "keys":
        return keys(args)
    return 2


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything we started is stopped by now; skip interpreter teardown, which the
    # Temporal client's leftover threads can abort (temporalio/sdk-python#300).
    os._exit(code)
