"""Background liveness heartbeats for the activities that change nothing.

A read (diagnose, a probe, a soak sample, a notification) has no checkpoint to heartbeat,
and without heartbeats Temporal notices a dead worker only when the read's whole
start-to-close timeout runs out (5 minutes for diagnose). While a read-only activity
runs, this interceptor heartbeats every ``every_s`` seconds from the worker's event loop:
the workflow gives those activities a short heartbeat timeout
(``activity_names.READ_HEARTBEAT_S``), so a crash costs seconds. Mutating activities are
left alone: their heartbeats carry the mutation checkpoint, which an empty heartbeat would
overwrite.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from runbook.activity_names import READ_ONLY


class ReadLivenessInterceptor(Interceptor):
    def __init__(self, every_s: float = 2.0, names: frozenset[str] = READ_ONLY) -> None:
        self.every_s = every_s
        self.names = names

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Liveness(next, self)


class _Liveness(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, cfg: ReadLivenessInterceptor) -> None:
        super().__init__(next)
        self.cfg = cfg

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if info.activity_type not in self.cfg.names or info.is_local:
            return await super().execute_activity(input)
        beat = asyncio.create_task(self._beat())
        try:
            return await super().execute_activity(input)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _beat(self) -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(self.cfg.every_s)
