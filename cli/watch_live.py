"""`runbook status --watch`: refresh the live view (cli/watch.py) until the run ends."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from rich.console import Console
from rich.live import Live

from cli import actions
from cli.client import Settings, connect
from cli.render import render_report
from cli.watch import render_watch
from cli.watch_parts import pending_steps
from runbook.status import TERMINAL_STATES, RunState


async def follow(settings: Settings, wid: str, interval: float, console: Console, *,
                 connect_to: Callable[[Settings], Awaitable[Any]] = connect,
                 get_status: Callable[..., Awaitable[actions.StatusView]] = actions.get_status,
                 ) -> RunState | None:
    """Redraw until the run ends; its final state (None when it closed without one)."""
    client = await connect_to(settings)
    view = await get_status(settings, wid, client)
    with Live(console=console, auto_refresh=False) as live:
        while True:
            if view.status is not None:
                # Sized to the terminal at each refresh (it may be resized): the view drops
                # its lower sections rather than scroll the step in flight away.
                size = console.size
                live.update(render_watch(wid, view.status, pending_steps(view.description),
                                         datetime.now(timezone.utc), size.width, size.height),
                            refresh=True)
            elif view.report is not None:
                live.update(render_report(wid, view.report), refresh=True)
            if view.status is not None and view.status.state in TERMINAL_STATES:
                return view.status.state
            if not view.running:
                return view.report.outcome if view.report else None
            await asyncio.sleep(interval)
            view = await get_status(settings, wid, client)
