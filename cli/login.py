"""`runbook login`, `logout`, `whoami`: an identity the approval service can verify.

The login is an OIDC ID token (from the service's dev issuer, a command such as
`gcloud auth print-identity-token`, or a file) that the service accepted at login time,
kept with who it names in ``$RUNBOOK_CONFIG_DIR/login.json`` (default ~/.config/runbook),
readable by the owner only. While it is stored and current, the commands that act on a
run go through the service (verified); without one they send direct updates (claimed).
The token is a credential: it is never printed, logged or put in an error message.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import jwt
import typer
from rich.console import Console
from rich.text import Text

from cli.client import CliError
from cli.service_client import DIRECT_HINT, LOGIN_HINT, ServiceClient

ENV_CONFIG_DIR = "RUNBOOK_CONFIG_DIR"
ENV_APPROVAL_URL = "RUNBOOK_APPROVAL_URL"
# Where ./dev up runs the service; used when nothing else names one.
DEFAULT_SERVICE_URL = "http://127.0.0.1:8095"
LOGIN_FILE = "login.json"
MAX_TOKEN = 16 * 1024
TOKEN_COMMAND_TIMEOUT_S = 120


@dataclass(frozen=True)
class StoredLogin:
    service: str
    token: str
    identity: str
    idp: str
    expires_at: int | None  # seconds since the epoch; None when the token does not say

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now.timestamp() >= self.expires_at

    def until(self) -> str:
        if self.expires_at is None:
            return "the issuer's expiry (not stated in the token)"
        return datetime.fromtimestamp(self.expires_at, timezone.utc).strftime("%H:%M UTC")

    def client(self) -> ServiceClient:
        return ServiceClient(self.service, self.token)


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_CONFIG_DIR):
        return Path(env[ENV_CONFIG_DIR])
    return Path.home() / ".config" / "runbook"


def login_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / LOGIN_FILE


def load_login(env: Mapping[str, str] | None = None) -> StoredLogin | None:
    path = login_path(env)
    try:
        data = json.loads(path.read_text())
        return StoredLogin(service=str(data["service"]), token=str(data["token"]),
                           identity=str(data["identity"]), idp=str(data["idp"]),
                           expires_at=int(data["expires_at"]) if data.get("expires_at") else None)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CliError(f"the stored login {path} cannot be read ({type(err).__name__})",
                       "run `runbook logout`, then `runbook login` again") from err


def save_login(login: StoredLogin, env: Mapping[str, str] | None = None) -> Path:
    """Write the login readable by its owner only: the file holds a bearer token."""
    path = login_path(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(login), fh)
    return path


def service_login(direct: bool, env: Mapping[str, str] | None = None,
                  now: datetime | None = None) -> StoredLogin | None:
    """The login to act through, or None for a direct update.

    Direct when asked (--direct) or when no login is stored. A stored login that has
    expired, or names another service than RUNBOOK_APPROVAL_URL, is an error rather than a
    silent fallback to an unverified update."""
    if direct:
        return None
    env = os.environ if env is None else env
    login = load_login(env)
    if login is None:
        return None
    wanted = (env.get(ENV_APPROVAL_URL) or "").rstrip("/")
    if wanted and wanted != login.service:
        raise CliError(f"you are logged in to the approval service at {login.service}, but "
                       f"{ENV_APPROVAL_URL} names {wanted}",
                       f"run `runbook login --service {wanted}`, or unset {ENV_APPROVAL_URL}; "
                       + DIRECT_HINT)
    if login.expired(now or datetime.now(timezone.utc)):
        raise CliError(f"login expired or refused: run `runbook login` (the login as "
                       f"{login.identity} ended at {login.until()})", LOGIN_HINT + "; " + DIRECT_HINT)
    return login


def route_note(login: StoredLogin | None) -> Text:
    """Which path a command took: said every time, since only one of them is verified."""
    if login is None:
        return Text("direct update: identity claimed, not verified", "yellow")
    return Text(f"via approval service as {login.identity} (verified)", "green")


def check_named(login: StoredLogin, option: str, named: str | None) -> None:
    """Under a login the service records the logged-in identity; naming someone else
    (--approver/--by/--requested-by) is refused, not silently replaced."""
    if named is None:
        return
    from runbook.identity import normalize_identity

    try:
        canonical = normalize_identity(named, option)
    except ValueError as err:
        raise CliError(f"{err}", "fix the option and run the command again") from err
    if canonical != login.identity:
        raise CliError(f"{option} {named!r} is not you: you are logged in as {login.identity}, and "
                       "the approval service records the logged-in identity",
                       f"drop {option}, or `runbook login` as {named}; " + DIRECT_HINT)


# --- obtaining a token ----------------------------------------------------------------


def _token_from_command(command: str) -> str:
    try:
        argv = shlex.split(command)
    except ValueError as err:
        raise CliError(f"--id-token-command: cannot be split into words ({err})") from err
    if not argv:
        raise CliError("--id-token-command: empty", "e.g. --id-token-command "
                       "'gcloud auth print-identity-token'")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TOKEN_COMMAND_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError as err:
        raise CliError(f"--id-token-command: {argv[0]} was not found",
                       "install it or give its full path") from err
    except subprocess.TimeoutExpired as err:
        raise CliError(f"--id-token-command: {argv[0]} did not finish within "
                       f"{TOKEN_COMMAND_TIMEOUT_S}s") from err
    if proc.returncode != 0:
        # Its stderr says why (not logged in, wrong account type); stdout may hold a token.
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])[:500]
        raise CliError(f"--id-token-command: {argv[0]} exited with code {proc.returncode}"
                       + (f": {tail}" if tail else ""),
                       "run the command yourself to see what it needs (e.g. `gcloud auth login`)")
    return proc.stdout


def _token_from_file(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_TOKEN:
            raise CliError(f"--token-file {path}: larger than {MAX_TOKEN} bytes; an ID token is "
                           "a few KB")
        return path.read_text()
    except FileNotFoundError as err:
        raise CliError(f"--token-file {path}: does not exist") from err
    except (OSError, UnicodeDecodeError) as err:
        raise CliError(f"--token-file {path}: cannot be read ({type(err).__name__})") from err


def _clean(token: str, source: str) -> str:
    token = token.strip()
    if not token:
        raise CliError(f"{source}: gave no token (empty output)")
    if len(token) > MAX_TOKEN or any(c.isspace() for c in token):
        raise CliError(f"{source}: did not give one ID token (expected a single JWT, "
                       "header.payload.signature)")
    return token


def _expiry(token: str, expires_in: Any, now: datetime) -> int | None:
    """When the token stops being accepted: its exp claim (read, not trusted: the service
    verified the token), else the issuer's expires_in."""
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        if isinstance(exp, (int, float)):
            return int(exp)
    except jwt.PyJWTError:
        pass
    if isinstance(expires_in, (int, float)) and expires_in > 0:
        return int(now.timestamp() + expires_in)
    return None


def login(service: str, *, dev_user: str | None = None, id_token_command: str | None = None,
          token_file: Path | None = None, env: Mapping[str, str] | None = None,
          now: datetime | None = None) -> StoredLogin:
    """Get a token from exactly one source, have the service check it, store the login."""
    sources = [s for s in ("--dev-user" if dev_user is not None else None,
                           "--id-token-command" if id_token_command is not None else None,
                           "--token-file" if token_file is not None else None) if s]
    if len(sources) != 1:
        raise CliError(f"give exactly one of --dev-user, --id-token-command, --token-file "
                       f"(got {', '.join(sources) or 'none'})",
                       "with ./dev up: `runbook login --dev-user <you>`; with Google: "
                       "`runbook login --id-token-command 'gcloud auth print-identity-token'`")
    now = now or datetime.now(timezone.utc)
    service = service.rstrip("/")
    expires_in = None
    if dev_user is not None:
        with ServiceClient(service) as anonymous:
            issued = anonymous.dev_token(dev_user)
        token, expires_in = _clean(str(issued.get("id_token", "")), "the dev issuer"), \
            issued.get("expires_in")
    elif id_token_command is not None:
        token = _clean(_token_from_command(id_token_command), "--id-token-command")
    else:
        assert token_file is not None
        token = _clean(_token_from_file(token_file), "--token-file")
    with ServiceClient(service, token) as client:
        who = client.whoami()
    identity, idp = who.get("identity"), who.get("idp")
    if not isinstance(identity, str) or not identity or not isinstance(idp, str):
        raise CliError(f"the approval service at {service} answered whoami without an identity",
                       f"is {service} an approval service?")
    stored = StoredLogin(service=service, token=token, identity=identity, idp=idp,
                         expires_at=_expiry(token, expires_in, now))
    save_login(stored, env)
    return stored


def default_service(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if env.get(ENV_APPROVAL_URL):
        return env[ENV_APPROVAL_URL]
    try:
        stored = load_login(env)
    except CliError:
        stored = None
    return stored.service if stored else DEFAULT_SERVICE_URL


# --- commands -------------------------------------------------------------------------


def register(app: typer.Typer, runs: Callable[..., Any], out: Console) -> None:
    @app.command("login")
    @runs
    def login_(service: Optional[str] = typer.Option(
                   None, "--service", help=f"approval service URL (default: {ENV_APPROVAL_URL}, "
                   f"else the stored login's, else {DEFAULT_SERVICE_URL})"),
               dev_user: Optional[str] = typer.Option(
                   None, "--dev-user", help="ask the service's dev issuer (./dev up) for NAME"),
               id_token_command: Optional[str] = typer.Option(
                   None, "--id-token-command", help="run this and use its output as the ID token, "
                   "e.g. 'gcloud auth print-identity-token'"),
               token_file: Optional[Path] = typer.Option(
                   None, "--token-file", help="read the ID token from this file")) -> None:
        """Log in to the approval service: approvals and other actions become verified."""
        stored = login(service or default_service(), dev_user=dev_user,
                       id_token_command=id_token_command, token_file=token_file)
        out.print(Text.assemble(("logged in as ", "green"), (stored.identity, "bold green"),
                                f" (issuer {stored.idp}) until {stored.until()}"))
        out.print(f"  service: {stored.service}; login kept in {login_path()} (owner only)")

    @app.command()
    @runs
    def logout() -> None:
        """Forget the stored login (commands then send direct, unverified updates)."""
        path = login_path()
        try:
            stored = load_login()
        except CliError:
            stored = None
        try:
            path.unlink()
        except FileNotFoundError:
            out.print("not logged in")
            return
        out.print(f"logged out{f' ({stored.identity} at {stored.service})' if stored else ''}")

    @app.command()
    @runs
    def whoami() -> None:
        """Who the approval service takes you to be, and until when."""
        stored = load_login()
        if stored is None:
            raise CliError("not logged in: commands send direct updates (identity claimed, "
                           "not verified)", LOGIN_HINT)
        if stored.expired(datetime.now(timezone.utc)):
            raise CliError(f"login expired or refused: run `runbook login` (the login as "
                           f"{stored.identity} ended at {stored.until()})", LOGIN_HINT)
        with stored.client() as client:
            who = client.whoami()
        out.print(Text.assemble((str(who.get("identity")), "bold green"),
                                f" (issuer {who.get('idp')}) via {stored.service}, "
                                f"until {stored.until()}"))
