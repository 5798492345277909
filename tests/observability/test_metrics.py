"""The worker's Prometheus endpoint: the runbook metrics appear, with their labels, while a
run is under way and after it ended; the Grafana dashboard queries only metrics the
worker exposes; a bad bind address is refused with the env var's name."""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
import temporalio.bridge
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify_channel import ChannelNotifyActivities
from activities.notify_channels import NotifyChannels
from gcpsim.launcher import free_port
from observability import metrics as m
from observability.metrics import ENV_METRICS_BIND, parse_bind, prometheus_runtime
from runbook.notifications import ChannelNotice
from runbook.status import RunState
from tests.workflow.doubles import FakeCloud
from tests.workflow.harness import FAST_SOAK, approve_when_pending, at_gate, finished, new_queue, start, until
from worker import build_worker

DASHBOARD = (Path(__file__).resolve().parents[2] / "deploy" / "observability" / "grafana"
             / "dashboards" / "runbook.json")
FAILING_STEP = "backend-timeout-staging-auth-service"  # phase 2
# Samples by name: [(labels, value)].
Scrape = dict[str, list[tuple[dict[str, str], float]]]
# Every scrape, kept for the dashboard test (the SDK's names come from a real endpoint).
SCRAPED_NAMES: set[str] = set()


async def scrape(bind: str) -> Scrape:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://{bind}/metrics", timeout=10)
    response.raise_for_status()
    samples: Scrape = defaultdict(list)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    SCRAPED_NAMES.update(samples)
    return samples


async def scrape_until(bind: str, wanted, what: str, deadline_s: float = 20) -> Scrape:
    """Scrape until ``wanted(samples)`` holds (the SDK exports asynchronously)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        samples = await scrape(bind)
        if wanted(samples):
            return samples
        if loop.time() > end:
            found = sorted(n for n in samples if n.startswith("remediation_"))
            raise AssertionError(f"{what} never appeared; runbook series: {found}")
        await asyncio.sleep(0.2)


def value(samples: Scrape, name: str, **labels: str) -> float:
    """The sum over the samples of ``name`` whose labels include ``labels``."""
    return sum(v for lab, v in samples.get(name, []) if labels.items() <= lab.items())


def label_sets(samples: Scrape, name: str, *keys: str) -> set[tuple[str, ...]]:
    return {tuple(lab.get(k, "") for k in keys) for lab, _ in samples.get(name, [])}


@pytest.fixture
async def metrics_client(time_skipping_env):
    """A client on its own runtime serving Prometheus on a free port, against the
    session's time-skipping server: a worker built on it records there, as in production."""
    bind = f"127.0.0.1:{free_port()}"
    client = await Client.connect(time_skipping_env.client.service_client.config.target_host,
                                  namespace=time_skipping_env.client.namespace,
                                  data_converter=pydantic_data_converter,
                                  runtime=prometheus_runtime(bind))
    return client, bind


async def test_runbook_metrics_during_and_after_a_run_that_rolls_back(time_skipping_env,
                                                                      metrics_client):
    await run_that_rolls_back(time_skipping_env, *metrics_client)


async def run_that_rolls_back(env, client: Client, bind: str) -> None:
    """Phase 2's step fails (a retry, then a non-retryable error); its decision gate times
    out and the run rolls back. Scrapes at the phase-2 gate and after the end."""
    cloud, tq = FakeCloud(), new_queue()
    cloud.failures[FAILING_STEP] = [
        ApplicationError("503 backend error", type="Unavailable"),
        ApplicationError("400 timeoutSec out of range", type="InvalidArgument", non_retryable=True)]
    duration = f"{m.STEP_DURATION}_seconds_count"
    attempts = f"{m.STEP_ATTEMPTS}_total"
    gate_wait = f"{m.GATE_WAIT}_seconds_count"
    async with build_worker(client, tq, cloud.activities()):
        handle = await start(env, {"soak": FAST_SOAK}, tq)
        await approve_when_pending(env, handle, "phase-1")
        await until(env, handle, at_gate("phase-2"))

        # During the run, waiting at phase-2: phase 1's gate and steps are on the endpoint.
        during = await scrape_until(
            bind, lambda s: value(s, gate_wait, gate="phase-1") and value(s, duration, step="expand-sql"),
            "phase-1's gate wait and steps")
        assert value(during, f"{m.RUNS_STARTED}_total") == 1
        assert label_sets(during, gate_wait, m.GATE, m.RESOLUTION) == {("phase-1", "approved")}
        assert value(during, duration, step="expand-sql", activity="expand_sql",
                     outcome="succeeded") == 1
        # Supporting activities carry no step label value that grows (a sequence number).
        steps = {step for step, in label_sets(during, duration, m.STEP)}
        assert "none" in steps and not any(step.isdigit() for step in steps)
        assert value(during, f"{m.RUNS_FINISHED}_total") == 0
        # The histogram has the buckets chosen for a human's wait, in seconds.
        buckets = {lab["le"] for lab, _ in during[f"{m.GATE_WAIT}_seconds_bucket"]}
        assert {"60.0", "7200.0", "+Inf"} <= buckets or {"60", "7200", "+Inf"} <= buckets

        await approve_when_pending(env, handle, "phase-2")
        report = await finished(handle)
    assert report.outcome == RunState.ROLLED_BACK

    after = await scrape_until(bind, lambda s: value(s, f"{m.RUNS_FINISHED}_total"),
                               "the run's outcome")
    assert label_sets(after, f"{m.RUNS_FINISHED}_total", m.OUTCOME) == {("ROLLED_BACK",)}
    assert value(after, f"{m.RUNS_FINISHED}_total", outcome="ROLLED_BACK") == 1
    assert label_sets(after, f"{m.ROLLBACKS}_total", m.REASON, m.PHASE) == {("failed", "2")}
    # Phase 2 asks on a failed step: its decision gate, labelled by step, timed out.
    assert label_sets(after, gate_wait, m.GATE, m.RESOLUTION) == {
        ("phase-1", "approved"), ("phase-2", "approved"),
        (f"decide-{FAILING_STEP}", "timed_out")}
    # The failing step: two failed attempts; the undos of phase 1 and 2 ran as their own steps.
    assert value(after, attempts, step=FAILING_STEP, outcome="failed") == 2
    assert value(after, attempts, step=FAILING_STEP, outcome="succeeded") == 0
    assert value(after, attempts, step="undo-expand-sql", outcome="succeeded") == 1
    for name, keys in m.EXPORTED.items():
        series = after.get(name) or after.get(f"{name}_count") or []
        for labels, _ in series:
            assert set(keys) <= labels.keys(), (name, labels)
    # SDK metrics share the endpoint.
    assert any(name.startswith("temporal_") for name in after)


async def test_a_phase_past_its_hard_limit_counts_each_budget_alarm(time_skipping_env,
                                                                   metrics_client):
    env, cloud, tq = time_skipping_env, FakeCloud(), new_queue()
    client, bind = metrics_client
    # Phase 4's soak never passes (503s): budget, escalation, then the hard limit.
    cloud.soak_503s = [3] * 1000
    request = {"soak": {"window_s": 600, "sample_every_s": 60},
               "budgets": {"phase_4_s": 300, "hard_limit_factor": 2.0}}
    async with build_worker(client, tq, cloud.activities()):
        handle = await start(env, request, tq)
        for gate in ("phase-1", "phase-2", "phase-3", "phase-4"):
            await approve_when_pending(env, handle, gate, skip_s=20)
        report = await finished(handle)
    assert report.outcome == RunState.ROLLED_BACK
    samples = await scrape_until(bind, lambda s: value(s, f"{m.RUNS_FINISHED}_total"),
                                 "the run's outcome")
    assert label_sets(samples, f"{m.BUDGET_BREACHES}_total", m.PHASE, m.KIND) == {
        ("4", "budget"), ("4", "escalation"), ("4", "hard_limit")}
    assert value(samples, f"{m.BUDGET_BREACHES}_total") == 3
    assert label_sets(samples, f"{m.ROLLBACKS}_total", m.REASON, m.PHASE) == {("failed", "4")}


async def test_a_failed_notification_counts_by_channel_kind(metrics_client):
    client, bind = metrics_client
    env = ActivityEnvironment()
    env.metric_meter = client.service_client.config.runtime.metric_meter
    chs = NotifyChannels.from_mapping({"channels": {
        # Nothing listens there: the send fails with a connection error.
        "hook": {"kind": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook"}}}, "test")
    notice = ChannelNotice(run_id="r", incident_id="1", level="escalation", recipient="oncall",
                           channel="hook", subject="s", body="b")
    for channel in ("hook", "missing"):
        with pytest.raises(ApplicationError):
            await env.run(ChannelNotifyActivities(chs, None).notify_channel,
                          notice.model_copy(update={"channel": channel}))
    samples = await scrape_until(bind, lambda s: value(s, f"{m.NOTIFICATION_FAILURES}_total"),
                                 "notification failures")
    assert label_sets(samples, f"{m.NOTIFICATION_FAILURES}_total", m.CHANNEL_KIND) == {
        ("webhook",), ("not_configured",)}


# -- the dashboard ---------------------------------------------------------------------

PROMQL_NAME = re.compile(r"\b((?:remediation|temporal)_[a-z0-9_]+)\b")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "runbook"
    exprs = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "prometheus", panel["title"]
            exprs.append(target["expr"])
    return exprs


def series_family(name: str) -> str:
    for suffix in HISTOGRAM_SERIES:
        if name.endswith(suffix) and name.removesuffix(suffix) in m.EXPORTED:
            return name.removesuffix(suffix)
    return name


def sdk_bridge_library() -> bytes:
    """The SDK core's compiled library: it holds the name of every metric it can export."""
    [library] = Path(temporalio.bridge.__file__).parent.glob("temporal_sdk_bridge*")
    return library.read_bytes()


def exported_series() -> set[str]:
    names = set()
    for name in m.EXPORTED:
        names |= {name} if name.endswith("_total") else {name + s for s in HISTOGRAM_SERIES}
    return names


async def test_the_dashboard_queries_only_metrics_the_worker_exposes(time_skipping_env,
                                                                     metrics_client):
    exprs = dashboard_queries()
    assert exprs
    if not any(n.startswith("temporal_") for n in SCRAPED_NAMES):
        # Run alone: take the SDK's names from a real endpoint after a run.
        await run_that_rolls_back(time_skipping_env, *metrics_client)
    known = exported_series() | SCRAPED_NAMES
    referenced = set()
    for expr in exprs:
        names = set(PROMQL_NAME.findall(expr))
        assert names, f"no metric in {expr!r}"
        referenced |= names
        # Grouping by a label the runbook metric does not carry would show one empty series.
        runbook = [n for n in names if n.startswith("remediation_")]
        for grouped in re.findall(r"by \(([^)]*)\)", expr):
            keys = {k.strip() for k in grouped.split(",")} - {"le"}
            for name in runbook:
                assert keys <= set(m.EXPORTED[series_family(name)]), (expr, keys)
    unseen = referenced - known
    # SDK counters exported only once their event happened: the SDK must define them.
    bridge = sdk_bridge_library()
    for name in sorted(unseen):
        core_name = m.SDK_METRICS_AFTER_FIRST_EVENT.get(name)
        assert core_name, f"the dashboard queries {name}, which nothing exposes"
        assert core_name.encode() in bridge, f"{core_name} is not an SDK metric"
    # Every runbook metric is on the board.
    for name in m.EXPORTED:
        assert any(n == name or n.startswith(name + "_") for n in referenced), name


# -- the bind address ------------------------------------------------------------------

@pytest.mark.parametrize("bind", ["9464", "localhost", ":9464", "0.0.0.0:http", "0.0.0.0:70000",
                                  "::1:9464"])
def test_a_malformed_bind_is_refused_naming_the_variable(bind):
    with pytest.raises(ValueError, match=ENV_METRICS_BIND):
        parse_bind(bind)


@pytest.mark.parametrize("bind,expected", [("0.0.0.0:9464", ("0.0.0.0", 9464)),
                                           ("[::]:9464", ("::", 9464))])
def test_a_bind_address_is_parsed(bind, expected):
    assert parse_bind(bind) == expected


def test_a_taken_port_is_refused_naming_the_variable():
    bind = f"127.0.0.1:{free_port()}"
    serving = prometheus_runtime(bind)
    with pytest.raises(ValueError, match=f"{ENV_METRICS_BIND}.*cannot serve metrics there"):
        prometheus_runtime(bind)
    assert serving.metric_meter is not None  # held open until here


async def test_a_run_cancelled_at_a_gate_records_the_gate_as_aborted(time_skipping_env,
                                                                     metrics_client):
    """Cancel from the UI while the phase-1 gate waits: the wait still counts, as aborted,
    and the run's outcome and rollback reason say so."""
    client, bind = metrics_client
    cloud, tq = FakeCloud(), new_queue()
    gate_wait = f"{m.GATE_WAIT}_seconds_count"
    async with build_worker(client, tq, cloud.activities()):
        handle = await start(time_skipping_env, {"soak": FAST_SOAK}, tq)
        await until(time_skipping_env, handle, at_gate("phase-1"))
        await handle.cancel()
        report = await finished(handle)
    after = await scrape_until(bind, lambda s: value(s, f"{m.RUNS_FINISHED}_total"),
                               "the cancelled run's outcome")
    assert label_sets(after, gate_wait, m.GATE, m.RESOLUTION) == {("phase-1", "aborted")}
    assert label_sets(after, f"{m.RUNS_FINISHED}_total", m.OUTCOME) == {(report.outcome.value,)}
