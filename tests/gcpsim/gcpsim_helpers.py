"""Helpers shared by the gcpsim tests (kept out of conftest so they can be imported)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
import urllib.error
import urllib.request

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from googleapiclient.discovery import build
from websockets.sync.client import connect

from gcpsim.launcher import Simulator

SPEED = 120.0  # simulated seconds per real second: fast, yet leaves in-flight states observable
PROJECT, REGION, NUMBER = "netra-staging", "us-central1", "123456789012"
LOC = f"projects/{PROJECT}/locations/{REGION}"
BACKEND = f"{LOC}/services/netra-backend-staging"
AUTH = f"{LOC}/services/auth-staging"
CONNECTOR = f"{LOC}/connectors/staging-connector"
SQL_INSTANCE = "netra-staging-db"
# The longest startup probe Cloud Run allows (initialDelaySeconds <= 240 and
# failureThreshold x periodSeconds <= 240): it tolerates a 480 s start, as run_v2.Probe fields.
MAX_PROBE = {"initial_delay_seconds": 240, "period_seconds": 10, "timeout_seconds": 5, "failure_threshold": 24}


def probe_window_s(probe: dict) -> int:
    """Seconds a startup probe (run_v2.Probe fields) tolerates: initial delay + threshold x period."""
    return probe["initial_delay_seconds"] + probe["failure_threshold"] * probe["period_seconds"]


MAX_PROBE_WINDOW_S = probe_window_s(MAX_PROBE)
REDIS = f"projects/{PROJECT}/locations/{REGION}/instances/staging-redis"
# Compute references: full selfLinks under LINK; the built-in load balancer's IP.
LINK = "https://www.googleapis.com/compute/v1/"
LB_IP = "34.120.10.20"
# Cloud Monitoring series the health model answers (connector CPU, Cloud SQL backends).
CPU = "vpcaccess.googleapis.com/connector/cpu/utilizations"
BACKENDS = "cloudsql.googleapis.com/database/postgresql/num_backends"
CONNECTOR_FILTER = f'metric.type = "{CPU}" AND resource.label.connector_name = "staging-connector"'
SQL_FILTER = (f'metric.type = "{BACKENDS}" AND resource.type = "cloudsql_database" '
              f'AND resource.label.database_id = "{PROJECT}:{SQL_INSTANCE}"')


def advance(sim: Simulator, seconds: float) -> dict:
    return sim.admin("POST", "/_sim/clock/advance", {"seconds": seconds})


def mutations(sim: Simulator, since: int = 0) -> list[dict]:
    return sim.admin("GET", f"/_sim/mutations?since={since}")["mutations"]


def add_fault(sim: Simulator, **spec) -> dict:
    return sim.admin("POST", "/_sim/faults", spec)


def remediate_infrastructure(sim: Simulator, sql_flags: list[dict] | None = None) -> None:
    """Scale the connector (e2-standard-4, 3-10) and move Cloud SQL to db-custom-2-7680
    (max_connections left at the tier default, 400) with the real discovery clients, and
    let both operations finish (connector 180 s, SQL tier change 300 s). Afterwards neither
    saturates, so the backend starts in its healthy startup_seconds (300 s) instead of
    300 + 420 s. ``sql_flags``: a databaseFlags list to send with the tier (omitted: kept)."""
    vpc = discovery(sim, "vpcaccess", "v1")
    vpc.projects().locations().connectors().patch(
        name=CONNECTOR, updateMask="minInstances,maxInstances,machineType",
        body={"minInstances": 3, "maxInstances": 10, "machineType": "e2-standard-4"}).execute()
    settings: dict = {"tier": "db-custom-2-7680"}
    if sql_flags is not None:
        settings["databaseFlags"] = sql_flags
    discovery(sim, "sqladmin", "v1").instances().patch(
        project=PROJECT, instance=SQL_INSTANCE, body={"settings": settings}).execute()
    advance(sim, 300)
    figures = sim.admin("GET", "/_sim/app")
    assert figures["connector"]["machineType"] == "e2-standard-4"
    assert figures["database"]["tier"] == "db-custom-2-7680"
    assert figures["connector"]["overflow_share"] == 0 and figures["database"]["refused_share"] == 0


def raw(sim: Simulator, method: str, path: str, body=None) -> tuple[int, dict]:
    """A raw HTTP call (status, JSON) that does not raise on errors."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(sim.endpoint + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def gapic_options(sim: Simulator) -> dict:
    return {"credentials": AnonymousCredentials(), "transport": "rest",
            "client_options": ClientOptions(api_endpoint=sim.endpoint)}


def discovery(sim: Simulator, name: str, version: str):
    endpoint = sim.compute_endpoint if name == "compute" else sim.endpoint
    return build(name, version, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint},
                 static_discovery=True, cache_discovery=False)


def ws_session(sim: Simulator) -> list[dict]:
    """Authenticate on the app's /ws and, once accepted, ask for one AI answer."""
    with connect(sim.endpoint.replace("http", "ws") + "/ws", open_timeout=5) as ws:
        ws.send(json.dumps({"type": "auth", "token": "test-user-token"}))
        answers = [json.loads(ws.recv(timeout=5))]
        if answers[0]["type"] == "auth_ok":
            ws.send(json.dumps({"type": "chat", "message": "hello"}))
            answers.append(json.loads(ws.recv(timeout=5)))
    return answers


def wait_op(compute, op: dict) -> dict:
    """Wait for a global Compute operation with the discovery client."""
    return compute.globalOperations().wait(project=PROJECT, operation=op["name"]).execute()


def attach_certificates(compute, *names: str) -> None:
    """Set the staging proxy's certificates (by partial URL) and wait for the operation."""
    links = [f"projects/{PROJECT}/global/sslCertificates/{n}" for n in names]
    wait_op(compute, compute.targetHttpsProxies().setSslCertificates(
        project=PROJECT, targetHttpsProxy="staging-https-proxy", body={"sslCertificates": links}).execute())


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def window(minutes: int = 5) -> tuple[str, str]:
    end = datetime.now(timezone.utc)
    return rfc3339(end - timedelta(minutes=minutes)), rfc3339(end)


def series(sim: Simulator, flt: str, **kw) -> dict:
    """timeSeries.list through the monitoring discovery client over the last 5 minutes."""
    start, end = window()
    params = {"interval_startTime": start, "interval_endTime": end, "view": "FULL"} | kw
    mon = discovery(sim, "monitoring", "v3")
    return mon.projects().timeSeries().list(name=f"projects/{PROJECT}", filter=flt, **params).execute()


def value(sim: Simulator, flt: str) -> float:
    """The one point of the one series the filter selects (a distribution's mean)."""
    (ts,) = series(sim, flt)["timeSeries"]
    (point,) = ts["points"]
    v = point["value"]
    if "distributionValue" in v:
        return v["distributionValue"]["mean"]
    return float(v["doubleValue"]) if "doubleValue" in v else int(v["int64Value"])
