"""Application probes: HTTP health, WebSocket auth, error-rate sampling.

A probe that reaches the application and gets the wrong answer is a ``StepFailed`` with
the figures (status, latency, limit); one that cannot connect is a retryable
``Transport`` error (the probe step's RetryPolicy bounds it).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import websockets
import websockets.asyncio.client
from temporalio import activity

from activities import errors
from activities.mutation import read_outcome
from activities.settings import Settings
from runbook import activity_names
from runbook.activity_io import (
    ErrorRateSample,
    ProbeParams,
    SampleErrorRateParams,
    StepOutcome,
    WebSocketProbeParams,
)
from runbook.urls import resolved_url_problem, url_host

# A probe waits this much longer than its latency limit, so a slow answer is measured and
# reported as too slow rather than as a bare timeout.
GRACE_S = 5.0


# The simulator runs its clock faster than real time and sleeps latency/speed, so it also
# reports the latency the application *would* have had; a probe against it judges that.
SIM_LATENCY_HEADER = "X-Sim-Latency-Ms"


class _ConnectWithoutRedirects(websockets.asyncio.client.connect):
    """``websockets.connect`` follows up to 10 redirects to any host, where the probe
    would then send its token: a redirect is reported as the handshake's HTTP status."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


class ProbeActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _latency(self, measured_ms: int, simulated: Any) -> int:
        # The slower of what we measured and what the server says it spent. The simulator
        # compresses time and reports the latency it models in a header; a real service
        # never sends it, so one code path serves both backends.
        if simulated is not None:
            try:
                return max(measured_ms, int(float(simulated)))
            except (TypeError, ValueError):
                pass
        return measured_ms

    def _url(self, base_url: str | None, path: str) -> str:
        try:
            base = self.settings.app_base_url(base_url)
        except ValueError as err:
            raise errors.app_error(str(err), errors.INVALID_ARGUMENT) from None
        return base + (path if path.startswith("/") else "/" + path)

    async def _checked_url(self, base_url: str | None, path: str) -> str:
        """The probe URL, once its host is resolved and allowed (``runbook.urls``): a
        request's ``app_url`` must not aim the worker at a metadata server or the like."""
        url = self._url(base_url, path)
        if base_url is None:
            # The worker's own configuration (REMEDIATION_APP_URL, or the simulator, which
            # compose reaches as http://gcpsim:8090): trusted like REMEDIATION_GCP_ENDPOINT.
            return url
        try:
            problem = await resolved_url_problem(url)
        except OSError as err:  # DNS may answer later: like a connection failure
            raise errors.app_error(f"probe {url_host(url)}: cannot resolve the host: "
                                   f"{type(err).__name__}: {err}", errors.TRANSPORT,
                                   non_retryable=False) from None
        if problem:
            raise errors.app_error(f"probe {url_host(url)}: destination refused, nothing "
                                   f"was sent: {problem}", errors.INVALID_ARGUMENT)
        return url

    @activity.defn(name=activity_names.PROBE_HEALTH)
    async def probe_health(self, p: ProbeParams) -> StepOutcome:
        url = await self._checked_url(p.base_url, p.path)
        async with httpx.AsyncClient(timeout=p.max_latency_ms / 1000 + GRACE_S) as client:
            start = time.monotonic()
            try:
                resp = await client.get(url)
            except httpx.TimeoutException:
                raise errors.step_failed(
                    f"probe {url}: no answer within {p.max_latency_ms / 1000 + GRACE_S:.1f}s "
                    f"(limit {p.max_latency_ms} ms)") from None
            except httpx.HTTPError as err:
                raise errors.to_application_error(err, action="probe", resource=url) from err
            latency = self._latency(_ms(start), resp.headers.get(SIM_LATENCY_HEADER))
        figures = {"url": url, "status": resp.status_code, "latency_ms": latency,
                   "max_latency_ms": p.max_latency_ms, "expect_status": p.expect_status}
        problems = []
        if resp.status_code != p.expect_status:
            problems.append(f"HTTP {resp.status_code} (expected {p.expect_status})")
        if latency > p.max_latency_ms:
            problems.append(f"latency {latency} ms > {p.max_latency_ms} ms")
        if problems:
            raise errors.step_failed(f"probe {url}: {'; '.join(problems)}", figures)
        return read_outcome(url, detail=f"HTTP {resp.status_code} in {latency} ms", data=figures)

    @activity.defn(name=activity_names.PROBE_WEBSOCKET)
    async def probe_websocket(self, p: WebSocketProbeParams) -> StepOutcome:
        http_url = await self._checked_url(p.base_url, p.path)
        url = "ws" + http_url[len("http"):]  # http -> ws, https -> wss
        limit_s = p.max_latency_ms / 1000
        start = time.monotonic()
        try:
            async with asyncio.timeout(limit_s + GRACE_S):
                async with _ConnectWithoutRedirects(url, open_timeout=limit_s + GRACE_S,
                                                    close_timeout=2) as ws:
                    # The token is worker configuration; it is never logged or returned.
                    await ws.send(json.dumps({"type": "auth", "token": self.settings.probe_token}))
                    reply = await ws.recv()
        except TimeoutError:
            raise errors.step_failed(f"websocket {url}: no auth reply within "
                                     f"{limit_s + GRACE_S:.1f}s") from None
        except websockets.InvalidStatus as err:
            raise errors.step_failed(
                f"websocket {url}: handshake refused with HTTP {err.response.status_code}",
                {"url": url, "status": err.response.status_code}) from None
        except websockets.ConnectionClosed as err:
            raise errors.step_failed(f"websocket {url}: closed before auth_ok ({err})",
                                     {"url": url}) from None
        except websockets.InvalidHandshake as err:
            raise errors.step_failed(f"websocket {url}: handshake failed: {err}",
                                     {"url": url}) from None
        except OSError as err:
            raise errors.to_application_error(err, action="websocket", resource=url) from err
        try:
            message: Any = json.loads(reply)
        except (TypeError, ValueError):
            message = {"raw": str(reply)[:200]}
        latency = self._latency(_ms(start), message.get("latency_ms")
                                if isinstance(message, dict) else None)
        figures = {"url": url, "latency_ms": latency, "max_latency_ms": p.max_latency_ms,
                   "reply_type": message.get("type") if isinstance(message, dict) else None}
        if not isinstance(message, dict) or message.get("type") != "auth_ok":
            raise errors.step_failed(f"websocket {url}: expected auth_ok, got {message}", figures)
        if latency > p.max_latency_ms:
            raise errors.step_failed(
                f"websocket {url}: authenticated in {latency} ms > {p.max_latency_ms} ms", figures)
        return read_outcome(url, detail=f"authenticated in {latency} ms", data=figures)

    @activity.defn(name=activity_names.SAMPLE_ERROR_RATE)
    async def sample_error_rate(self, p: SampleErrorRateParams) -> StepOutcome:
        url = await self._checked_url(p.base_url, p.path)
        errors_503 = errors_other = max_latency = 0
        async with httpx.AsyncClient(timeout=10.0) as client:
            for _ in range(p.requests):
                activity.heartbeat()
                start = time.monotonic()
                simulated = None
                try:
                    resp = await client.get(url)
                    status = resp.status_code
                    simulated = resp.headers.get(SIM_LATENCY_HEADER)
                except httpx.HTTPError:
                    status = None  # unreachable counts as an error, not a crash of the sample
                max_latency = max(max_latency, self._latency(_ms(start), simulated))
                if status == 503:
                    errors_503 += 1
                elif status is None or status >= 400:
                    errors_other += 1
        sample = ErrorRateSample(requests=p.requests, errors_503=errors_503,
                                 errors_other=errors_other, max_latency_ms=max_latency)
        return read_outcome(
            url, data=sample.model_dump(),
            detail=f"{p.requests} requests: {errors_503} x 503, {errors_other} other errors, "
                   f"error rate {sample.error_rate:.1%}, max latency {max_latency} ms")
