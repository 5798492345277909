"""Health probes for containers and scripts: ``python -m devstack.probe worker|temporal``.

Exit code 0 when healthy, 1 otherwise, with one line saying why. Configuration comes
from the same environment variables the worker reads.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime, timedelta, timezone


async def _probe(what: str) -> str | None:
    from temporalio.client import Client

    from cli.client import Settings, live_pollers

    s = Settings.from_env()
    try:
        client = await Client.connect(s.address, namespace=s.namespace)
    except Exception as err:
        return f"cannot reach Temporal at {s.address}: {err}"
    if what == "temporal":
        return None
    since = datetime.now(timezone.utc) - timedelta(minutes=2)
    pollers = await live_pollers(client, s.namespace, s.task_queue, since=since)
    return None if pollers else f"no worker polled task queue {s.task_queue!r} in the last 2 minutes"


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "worker"
    if what not in ("worker", "temporal"):
        print("usage: python -m devstack.probe [worker|temporal]", file=sys.stderr)
        return 2
    problem = asyncio.run(_probe(what))
    print(problem or f"{what}: healthy")
    return 1 if problem else 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    # Skip interpreter teardown: the Temporal client's threads can abort it
    # (temporalio/sdk-python#300) and turn a healthy probe into exit 134.
    os._exit(code)
