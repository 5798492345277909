"""Every bad request is refused before anything runs, naming the field and the rule."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from runbook import resource_names as names
from runbook.default_runbook import build_runbook
from runbook.field_problems import _unwrap
from runbook.request import RemediationRequest, request_problems
from tests.activities import world as activities_world
from tests.runbook.test_plan_preflight import diagnosis, plan_for


def problems_of(raw: dict) -> dict[str, str]:
    model, problems = request_problems(raw)
    assert (model is None) == bool(problems)
    return {p.field: p.reason for p in problems}


def with_target(field: str, value) -> dict:
    return {"targets": {field: value}}


def test_the_default_request_and_the_simulator_worlds_names_are_valid():
    req, problems = request_problems({})
    assert problems == [] and build_runbook(req)
    w = activities_world
    names_used = {"project": w.P, "region": w.R, "connector": w.CONNECTOR, "sql_instance": w.SQL,
                  "backend_service": w.BACKEND, "certificate": w.CERT, "https_proxy": w.PROXY,
                  "redis_instance": w.REDIS, "health_checks": {w.HC: "/health"},
                  "backend_services": [w.BS, w.AUTH_BS]}
    assert problems_of({"targets": names_used}) == {}


# Each named resource, its rule, and a name that is valid only just.
NAMED = [
    ("project", names.PROJECT_ID, "a" * 30),
    ("region", names.REGION, "northamerica-northeast2"),
    ("connector", names.VPC_CONNECTOR, "c" * 25),
    ("sql_instance", names.SQL_INSTANCE, "s" * 98),
    ("backend_service", names.RUN_SERVICE, "b" * 49),
    ("auth_service", names.RUN_SERVICE, "a"),
    ("certificate", names.COMPUTE_NAME, "c" * 63),
    ("https_proxy", names.COMPUTE_NAME, "p1-x"),
    ("redis_instance", names.REDIS_INSTANCE, "r" * 40),
]
BAD_NAMES = ["has space", "ctrl\x07char", "ünïcode", "../../etc/passwd", "x" * 100_000,
             "UPPER", "", "-leading-hyphen", "trailing-", "projects/p/x", "tab\tname"]


@pytest.mark.parametrize("field,rule,longest", NAMED, ids=[n[0] for n in NAMED])
def test_resource_names_follow_googles_documented_patterns(field, rule, longest):
    assert problems_of(with_target(field, longest)) == {}
    too_long = longest + "x" if field not in ("region", "auth_service", "https_proxy") else None
    # Cloud SQL documents no rule on the last character.
    bad_names = [n for n in BAD_NAMES if not (field == "sql_instance" and n == "trailing-")]
    for bad in bad_names + ([too_long] if too_long else []):
        reason = problems_of(with_target(field, bad))[f"targets.{field}"]
        assert f"pattern {rule.pattern}" in reason and rule.what in reason
        assert len(reason) < 600  # a 100 KB name is shown shortened


def test_domain_scoped_legacy_project_ids_are_accepted():
    assert problems_of(with_target("project", "example.com:my-project")) == {}
    assert problems_of(with_target("project", "short")) != {}  # 5 characters


def test_names_inside_lists_and_dicts_are_checked_where_they_are():
    found = problems_of({"targets": {
        "backend_services": ["ok-one", "Bad One"],
        "health_checks": {"bad name": "/health", "good-check": "no-slash"},
        "required_secrets": ["fine_Secret-1", "../secret", "s" * 256],
    }})
    assert "Compute Engine resource name" in found["targets.backend_services.1"]
    assert "Compute Engine resource name" in found["targets.health_checks.bad name.[key]"]
    assert "HTTP request path" in found["targets.health_checks.good-check"]
    assert "Secret Manager secret id" in found["targets.required_secrets.1"]
    assert "pattern ^[a-zA-Z0-9_-]{1,255}$" in found["targets.required_secrets.2"]
    assert "more than once" in problems_of(
        {"targets": {"backend_services": ["a-b", "a-b"]}})["targets.backend_services"]


def test_certificate_domains_a_google_managed_certificate_can_cover():
    assert "at least 1 item" in problems_of(with_target("certificate_domains", []))[
        "targets.certificate_domains"]
    assert "do not support wildcard" in problems_of(
        with_target("certificate_domains", ["*.netrasystems.ai"]))["targets.certificate_domains.0"]
    many = [f"h{i}.example.com" for i in range(101)]
    assert "at most 100 items" in problems_of(with_target("certificate_domains", many))[
        "targets.certificate_domains"]
    for bad in ("localhost", "Upper.example.com", "trailing.example.com.", "a..b.com",
                "-x.example.com", "x" * 60 + ".com", "1.2.3.4", "spa ce.example.com"):
        assert "targets.certificate_domains.0" in problems_of(
            with_target("certificate_domains", [bad])), bad
    assert "more than once" in problems_of(
        with_target("certificate_domains", ["a.example.com", "a.example.com"]))[
        "targets.certificate_domains"]


@pytest.mark.parametrize("cpu,memory,allowed", [
    ("8", "2Gi", False), ("8", "4Gi", True), ("4", "64Gi", False), ("8", "32Gi", True),
    ("8", "33Gi", False), ("1", "256Mi", False), ("2", "8Gi", True), ("4", "1Gi", False)])
def test_cloud_run_cpu_and_memory_follow_its_table(cpu, memory, allowed):
    found = problems_of({"desired": {"backend_cpu": cpu, "backend_memory": memory}})
    assert (found == {}) is allowed
    if not allowed:
        assert "Cloud Run" in found["desired.backend_memory"]


def test_env_vars_are_names_cloud_run_takes():
    found = problems_of({"desired": {"incident_env": {"PORT": "1", "bad name": "x",
                                                      "OK_NAME": "nul\x00byte"}}})
    assert "reserved" in found["desired.incident_env.PORT.[key]"]
    assert "environment variable name" in found["desired.incident_env.bad name.[key]"]
    assert "NUL" in found["desired.incident_env.OK_NAME"]


def test_impossible_approval_policies_are_refused():
    def approval(gate: dict, requester: str = "carol", rule: bool = True) -> dict[str, str]:
        return problems_of({"requested_by": requester, "approval": {
            "two_person_rule": rule, "gates": {"phase-2": gate}}})

    assert "min_approvals is 3 but only 2 distinct" in approval(
        {"min_approvals": 3, "approvers": ["alice", "bob"]})["approval.gates.phase-2.approvers"]
    only_requester = approval({"approvers": ["carol"]})["approval.gates.phase-2.approvers"]
    assert "requester 'carol' is excluded (two-person rule)" in only_requester
    # The requester spelled otherwise is still the requester; one person spelled twice is one.
    for spelling in ("Carol", "carol ", "CAROL", "ｃａｒｏｌ"):
        assert approval({"approvers": [spelling]}), spelling
    assert approval({"min_approvals": 3, "approvers": ["alice", "Alice", "bob", "carol"]})
    assert approval({"min_approvals": 2, "approvers": ["alice", "bob", "carol"]}) == {}
    assert approval({"approvers": ["carol"]}, rule=False) == {}
    assert "greater than or equal to 1" in approval({"min_approvals": 0})[
        "approval.gates.phase-2.min_approvals"]
    for junk in ("", "carol\u200b", "a\x00b", "x" * 100_000):
        assert "approval.gates.phase-2.approvers.0" in approval({"approvers": [junk]}), junk


def test_the_requester_is_kept_in_one_spelling():
    req, _ = request_problems({"requested_by": " Carol "})
    assert req.requested_by == "carol"
    assert problems_of({"requested_by": "carol\u200b"})["requested_by"]
    assert request_problems({"requested_by": ""})[0].requested_by == ""


@pytest.mark.parametrize("raw,field", [
    ({"approval": {"default": {"timeout_s": 10**12}}}, "approval.default.timeout_s"),
    ({"approval": {"default": {"timeout_s": 1e12}}}, "approval.default.timeout_s"),
    ({"budgets": {"phase_3_s": 10**13}}, "budgets.phase_3_s"),
    ({"budgets": {"phase_1_s": 0}}, "budgets.phase_1_s"),
    ({"approval": {"gates": {"phase-4": {"remind_after_s": -1}}}},
     "approval.gates.phase-4.remind_after_s"),
    ({"soak": {"window_s": 10**9}}, "soak.window_s"),
    ({"soak": {"window_s": 86400, "sample_every_s": 1}}, "soak.sample_every_s"),
    ({"lease": {"max_wait_s": 10**12}}, "lease.max_wait_s"),
    ({"budgets": {"hard_limit_factor": float("nan")}}, "budgets.hard_limit_factor"),
    ({"soak": {"max_error_rate": float("inf")}}, "soak.max_error_rate"),
    ({"approval": {"default": {"min_approvals": True}}}, "approval.default.min_approvals"),
    ({"desired": {"backend_max_instances": "15"}}, "desired.backend_max_instances"),
])
def test_durations_and_numbers_out_of_bounds_name_the_field(raw, field):
    found = problems_of(raw)
    assert list(found) == [field]
    assert found[field]


def numeric_fields(model: type[BaseModel] = RemediationRequest, prefix: str = ""):
    """Every int/float field of the request, found by walking the model (a new numeric
    field is covered without editing this test)."""
    for name, info in model.model_fields.items():
        kind = _unwrap(info.annotation)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from numeric_fields(kind, f"{prefix}{name}.")
        elif kind in (int, float) and typing.get_origin(kind) is None:
            yield f"{prefix}{name}"


def nested(path: str, value) -> dict:
    raw: dict = {}
    node = raw
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return raw


@pytest.mark.parametrize("path", sorted(numeric_fields()))
@pytest.mark.parametrize("value", [-1, 10**15])
def test_every_number_has_a_bound_stated_in_the_refusal(path, value):
    found = problems_of(nested(path, value))
    assert found, f"{path}={value} was accepted"
    [reason] = [r for f, r in found.items() if f == path or f.startswith(path.rsplit(".", 1)[0])]
    assert any(ch.isdigit() for ch in reason.replace(str(value), "")), reason


@pytest.mark.parametrize("path", sorted(numeric_fields()))
@pytest.mark.parametrize("value", [float("nan"), float("-inf"), 1e308])
def test_no_number_field_takes_nan_infinity_or_a_float_overflow(path, value):
    found = problems_of(nested(path, value))
    assert list(found) == [path], found
    assert found[path]


def test_unknown_keys_at_any_depth_are_named_with_the_known_ones():
    found = problems_of({"desired": {"startup_probe": {"periodSeconds": 10}}, "extra": 1})
    assert "known: failure_threshold, initial_delay_s" in found["desired.startup_probe.periodSeconds"]
    assert "unknown field" in found["extra"]


def test_a_health_check_or_service_that_does_not_exist_is_refused_before_phase_1():
    diag = diagnosis("INSTANCE_GROUP")
    diag.health_checks = diag.health_checks[:1]
    plan = plan_for({}, diag)
    [problem] = plan.problems
    assert problem.field == "targets.health_checks"
    assert "staging-auth-health-check" in problem.reason
    diag = diagnosis("SERVERLESS")
    diag.run_services = diag.run_services[:1]
    assert [p.field for p in plan_for({}, diag).problems] == ["targets.auth_service"]
