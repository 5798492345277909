"""Cloud Run v2 resource model: normalisation, validation, revisions and traffic.

Everything a Service or Revision carries on the wire is a field of the run v2 protos:
finished operations embed them in an ``Any`` that the client parses with
``ignore_unknown_fields=False``. Private bookkeeping lives under ``_sim`` and is stripped
by :func:`gcpsim.context.public` before anything is served.
"""
from __future__ import annotations

import json
import re
from typing import Any

from google.cloud import run_v2
from google.protobuf import json_format

from .context import Sim, digest
from .errors import failed_precondition, invalid
from .run_limits import validate_resources, validate_startup_probe

SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
REVISION_TYPE = "type.googleapis.com/google.cloud.run.v2.Revision"
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"

# Fields a client may set on UpdateService; everything else in a request is output-only
# (uid, generation, conditions, etag, ...) and ignored, as the real API does.
WRITABLE = (
    "description", "labels", "annotations", "client", "clientVersion", "ingress", "launchStage",
    "binaryAuthorization", "template", "traffic", "scaling", "invokerIamDisabled",
    "defaultUriDisabled", "customAudiences", "buildConfig", "iapEnabled",
)

# Simulated seconds for a rollout: a new revision (image pull, container start, startup
# probe) versus a traffic-only change, and a revision deletion.
ROLLOUT_SECONDS = 45.0
TRAFFIC_ONLY_SECONDS = 8.0
DELETE_REVISION_SECONDS = 10.0

MAX_TIMEOUT_S = 3600


def camel(path: str) -> str:
    head, *rest = path.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def normalize(body: dict[str, Any], message: type = run_v2.Service) -> dict[str, Any]:
    """Parse a request body through the run v2 proto: int enums become names, unknown
    keys are dropped, and type errors become INVALID_ARGUMENT like the real front end."""
    try:
        msg = message.from_json(json.dumps(body), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise invalid(f"Invalid JSON payload received. {exc}") from exc
    return message.to_dict(
        msg,
        use_integers_for_enums=False,
        preserving_proto_field_name=False,
        always_print_fields_with_no_presence=False,
    )


def short(name: str | None) -> str:
    """The last segment of a resource name or link ('' for None)."""
    return str(name or "").rstrip("/").rsplit("/", 1)[-1]


# ---- resources ----------------------------------------------------------------------
def duration_seconds(value: str | None, default: float) -> float | None:
    if value is None:
        return default
    m = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(value))
    return float(m.group(1)) if m else None


def env_of(template: dict[str, Any]) -> dict[str, str]:
    containers = template.get("containers") or [{}]
    return {e["name"]: e.get("value", "") for e in containers[0].get("env", []) if "name" in e}


def validate_template(template: dict[str, Any]) -> None:
    """Synchronous checks the real front end makes before accepting an update."""
    containers = template.get("containers") or []
    if not containers:
        raise invalid("template.containers: at least one container is required.", "template.containers")
    for i, c in enumerate(containers):
        field = f"template.containers[{i}]"
        if not c.get("image"):
            raise invalid(f"{field}.image: an image is required.", f"{field}.image")
    validate_resources(template)
    validate_startup_probe(template)
    timeout = duration_seconds(template.get("timeout"), 300)
    if timeout is None or not 1 <= timeout <= MAX_TIMEOUT_S:
        raise invalid(f"template.timeout: must be between 1s and {MAX_TIMEOUT_S}s.", "template.timeout")
    scaling = template.get("scaling", {})
    lo, hi = scaling.get("minInstanceCount", 0), scaling.get("maxInstanceCount", 100)
    if lo < 0 or hi < 1 or lo > hi:
        raise invalid(
            f"template.scaling: minInstanceCount ({lo}) must be <= maxInstanceCount ({hi}) and max >= 1.",
            "template.scaling.maxInstanceCount")
    conc = template.get("maxInstanceRequestConcurrency", 80)
    if not 1 <= conc <= 1000:
        raise invalid("template.maxInstanceRequestConcurrency: must be between 1 and 1000.",
                      "template.maxInstanceRequestConcurrency")


def startup_problem(sim: Sim, template: dict[str, Any], project: str) -> str | None:
    """Why a revision of a service in ``project`` built from ``template`` would fail to
    start (None if it starts).

    These are the failures real Cloud Run reports only when the revision is rolled out: a
    missing VPC connector, unreadable secrets. (Impossible cpu/memory pairs are refused
    synchronously by :func:`validate_template`, GCP_FIDELITY A6; a too-short startup probe
    is decided when the rollout starts, see cloud_run.)"""
    for i, c in enumerate(template.get("containers", [])):
        for env in c.get("env", []):
            ref = env.get("valueSource", {}).get("secretKeyRef")
            if ref:
                problem = _secret_problem(sim, ref, project)
                if problem:
                    return f"containers[{i}].env {env.get('name')}: {problem}"
    connector = template.get("vpcAccess", {}).get("connector")
    if connector:
        conn = sim.store.get("vpcaccess", connector)
        if conn is None or conn.get("state") in ("DELETING", "ERROR"):
            return f"VPC connector {connector} does not exist or is not usable."
    return None


def _secret_problem(sim: Sim, ref: dict[str, Any], project: str) -> str | None:
    secret = ref.get("secret", "")
    if "/" not in secret:
        # A short name refers to a secret of the service's own project.
        secret = f"projects/{sim.project_number(project)}/secrets/{secret}"
    else:
        parts = secret.split("/")
        secret = f"projects/{sim.project_number(parts[1])}/secrets/{parts[3]}"
    if sim.store.get("secretmanager", secret) is None:
        return f"secret {secret} was not found."
    versions = sim.store.list("secretmanager", "versions", secret + "/versions/")
    version = str(ref.get("version", "latest"))
    if version == "latest":
        chosen = max(versions, key=lambda v: int(short(v["name"])), default=None)
    else:
        chosen = next((v for v in versions if short(v["name"]) == version), None)
    if chosen is None or chosen.get("state") != "ENABLED":
        return f"version '{version}' of secret {secret} is not enabled."
    return None


# ---- revisions ----------------------------------------------------------------------
def revision_suffix(service_name: str, number: int) -> str:
    """Three lowercase letters, stable for (service, number), like Cloud Run's suffix."""
    h = digest([service_name, number], 16)
    return "".join(chr(ord("a") + (ord(ch) % 26)) for ch in h[:3])


def condition(type_: str, state: str, t: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "state": state, "lastTransitionTime": t, **extra}


def build_revision(sim: Sim, service: dict[str, Any], template: dict[str, Any], number: int,
                   now: str) -> dict[str, Any]:
    svc_name = service["name"]
    rev_short = template.get("revision") or f"{short(svc_name)}-{number:05d}-{revision_suffix(svc_name, number)}"
    project = svc_name.split("/")[1]
    scaling = {"maxInstanceCount": 100, **template.get("scaling", {})}
    rev = {
        "name": f"{svc_name}/revisions/{rev_short}",
        "uid": digest([svc_name, rev_short, "uid"], 22),
        "generation": "1",
        "labels": template.get("labels", {}),
        "annotations": template.get("annotations", {}),
        "createTime": now,
        "updateTime": now,
        "launchStage": service.get("launchStage", "GA"),
        "service": svc_name,
        "scaling": scaling,
        "maxInstanceRequestConcurrency": template.get("maxInstanceRequestConcurrency", 80),
        "timeout": template.get("timeout", "300s"),
        "serviceAccount": template.get("serviceAccount",
                                       f"{sim.project_number(project)}-compute@developer.gserviceaccount.com"),
        "containers": template.get("containers", []),
        "executionEnvironment": template.get("executionEnvironment", "EXECUTION_ENVIRONMENT_GEN2"),
        "observedGeneration": "1",
        "logUri": f"https://console.cloud.google.com/logs/viewer?project={project}"
                  f"&resource=cloud_run_revision/revision_name/{rev_short}",
        "_sim": {"number": number, "status": "PENDING", "template": template},
    }
    if template.get("vpcAccess"):
        rev["vpcAccess"] = template["vpcAccess"]
    set_revision_status(rev, "PENDING", now)
    return rev


def set_revision_status(rev: dict[str, Any], status: str, now: str, message: str | None = None) -> None:
    rev["_sim"]["status"] = status
    rev["updateTime"] = now
    if status == "PENDING":
        rev["reconciling"] = True
        rev["conditions"] = [
            condition("Ready", "CONDITION_RECONCILING", now, revisionReason="PENDING"),
            condition("ContainerHealthy", "CONDITION_RECONCILING", now),
            condition("ResourcesAvailable", "CONDITION_RECONCILING", now),
        ]
    elif status == "READY":
        rev["reconciling"] = False
        rev["conditions"] = [
            condition("Ready", "CONDITION_SUCCEEDED", now),
            condition("ContainerHealthy", "CONDITION_SUCCEEDED", now),
            condition("ResourcesAvailable", "CONDITION_SUCCEEDED", now),
        ]
    else:  # FAILED
        rev["reconciling"] = False
        rev["conditions"] = [
            condition("Ready", "CONDITION_FAILED", now, reason="REVISION_FAILED", severity="ERROR",
                      message=message or "Revision failed."),
            condition("ContainerHealthy", "CONDITION_FAILED", now, severity="ERROR",
                      message=message or "The container failed to start."),
            condition("ResourcesAvailable", "CONDITION_SUCCEEDED", now),
        ]
    rev["etag"] = '"' + digest([rev["name"], status, now]) + '"'


def render_revision(rev: dict[str, Any], service: dict[str, Any] | None) -> dict[str, Any]:
    """Public Revision JSON, with the ``Active`` condition derived from the service's
    current traffic (serving revisions are active, the others retired)."""
    out = {k: v for k, v in rev.items() if k != "_sim"}
    serving = serving_revisions(service) if service else {}
    t = rev["updateTime"]
    if rev["_sim"]["status"] == "READY":
        if serving.get(short(rev["name"]), 0) > 0:
            active = condition("Active", "CONDITION_SUCCEEDED", t)
        else:
            active = condition("Active", "CONDITION_FAILED", t, revisionReason="RETIRED", severity="INFO",
                               message="Revision retired.")
        out["conditions"] = rev["conditions"] + [active]
    return out


# ---- traffic ------------------------------------------------------------------------
def default_traffic() -> list[dict[str, Any]]:
    return [{"type": LATEST, "percent": 100}]


def resolve_traffic(traffic: list[dict[str, Any]], latest_ready: str | None, uri: str) -> list[dict[str, Any]]:
    statuses = []
    for t in traffic or default_traffic():
        status: dict[str, Any] = {"type": t.get("type", LATEST), "percent": t.get("percent", 0)}
        rev = latest_ready if status["type"] == LATEST else t.get("revision")
        if rev:
            status["revision"] = short(rev)
        if t.get("tag"):
            status["tag"] = t["tag"]
            status["uri"] = uri.replace("https://", f"https://{t['tag']}---", 1)
        statuses.append(status)
    return statuses


def serving_revisions(service: dict[str, Any]) -> dict[str, int]:
    """Revision short name -> percent of traffic it actually receives now."""
    out: dict[str, int] = {}
    for s in service.get("trafficStatuses", []):
        if s.get("revision") and s.get("percent", 0) > 0:
            out[s["revision"]] = out.get(s["revision"], 0) + s["percent"]
    return out


def validate_traffic(traffic: list[dict[str, Any]], revisions: dict[str, dict[str, Any]]) -> None:
    """Percentages add up to 100 and named revisions exist and are ready to serve."""
    if not traffic:
        return
    total = 0
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(traffic):
        kind = t.get("type", "TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED")
        pct = t.get("percent", 0)
        if not 0 <= pct <= 100:
            raise invalid(f"traffic[{i}].percent: must be between 0 and 100.", f"traffic[{i}].percent")
        total += pct
        if kind == LATEST:
            if t.get("revision"):
                raise invalid(f"traffic[{i}]: a LATEST target cannot name a revision.", f"traffic[{i}].revision")
            key = ("latest", "")
        elif kind == REVISION:
            name = short(t.get("revision", ""))
            if not name:
                raise invalid(f"traffic[{i}].revision: required for a REVISION target.", f"traffic[{i}].revision")
            rev = revisions.get(name)
            if rev is None:
                raise invalid(f"traffic[{i}].revision: revision '{name}' does not exist.", f"traffic[{i}].revision")
            status = rev["_sim"]["status"]
            if status != "READY" or rev["_sim"].get("deleting"):
                raise failed_precondition(
                    f"Revision '{name}' is not ready and cannot serve traffic "
                    f"(status {status}); traffic[{i}] may only name ready revisions.")
            key = ("rev", name)
        else:
            raise invalid(f"traffic[{i}].type: must be LATEST or REVISION.", f"traffic[{i}].type")
        if key in seen and pct:
            raise invalid(f"traffic[{i}]: duplicate target.", f"traffic[{i}]")
        seen.add(key)
    if total != 100:
        raise invalid(f"traffic: percentages must add up to 100 (got {total}).", "traffic")
