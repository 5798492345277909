"""Fuzzed requests: each one is either valid or refused with problems that name a real
field and say why; nothing else ever escapes validation. Valid requests always build a
runbook.
"""

from __future__ import annotations

import copy
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from runbook import resource_names as names
from runbook.default_runbook import build_runbook
from runbook.field_problems import _unwrap, known_fields
from runbook.credentials import looks_like_credential
from runbook.request import GATE_IDS, RemediationRequest, request_problems

# Long proofs: `./dev test -m faults` (CI) runs them; `./dev test` stays under 5 minutes.
pytestmark = pytest.mark.faults

FUZZ = settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck))
VALID = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
BASE = RemediationRequest().model_dump(mode="json")

# --- junk --------------------------------------------------------------------------------

junk_strings = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zs", "Zl", "So", "Lo"]), max_size=20),
    st.sampled_from(["", " ", "../../etc/passwd", "x" * 100_000, "carol\u200b", "Carol ",
                     "file:///etc/passwd", "http://169.254.169.254/computeMetadata/v1/",
                     "http://metadata.google.internal/", "https://[::1]:99999/", "*.example.com",
                     "gopher://x", "javascript:alert(1)", "\x00", "\ud800", "db-custom-2-7680\n",
                     "6Gi\n", "٤Gi", "1e12", "NaN", "-1", "phase-1 ", "PHASE-1"]),
)
junk_numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e12, 1e13, 10**400, -0.0, 2**63, True, False]),
)
junk_scalars = st.one_of(junk_strings, junk_numbers, st.none(), st.booleans())
junk = st.recursive(junk_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(junk_strings, inner, max_size=4)), max_leaves=12)
junk_channel = st.fixed_dictionaries({}, optional={"kind": junk_scalars, "url": junk_strings,
                                                   "headers": junk})


def paths(node, prefix=()):
    """Every path into a JSON value (dict keys and list indexes)."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*prefix, i))


def _at(node, path):
    for part in path:
        node = node[part]
    return node


BASE_PATHS = [p for p in paths(BASE) if p]
CONTAINER_PATHS = [p for p in [(), *BASE_PATHS] if isinstance(_at(BASE, p), dict)]


@st.composite
def mutated_requests(draw) -> dict:
    """The default request with 1-4 junk edits: a value replaced, an unknown key added at
    any depth, a junk gate, junk notification routes or channels, a junk URL."""
    raw = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["replace", "replace", "unknown_key", "gate",
                                     "notifications", "legacy_channels", "url"]))
        try:
            _edit(draw, raw, kind)
        except (KeyError, IndexError, TypeError, AttributeError):
            pass  # an earlier edit replaced a parent of this path with junk
    return raw


def _edit(draw, raw: dict, kind: str) -> None:
    if kind == "replace":
        path = draw(st.sampled_from(BASE_PATHS))
        _at(raw, path[:-1])[path[-1]] = draw(junk)
    elif kind == "unknown_key":
        node = _at(raw, draw(st.sampled_from(CONTAINER_PATHS)))
        node[draw(junk_strings)] = draw(junk)
    elif kind == "gate":
        gates = raw.setdefault("approval", {}).setdefault("gates", {})
        gates[draw(st.one_of(st.sampled_from(GATE_IDS), junk_strings))] = draw(
            st.one_of(junk, st.fixed_dictionaries({}, optional={
                "min_approvals": junk_numbers, "approvers": st.lists(junk_strings),
                "timeout_s": junk_numbers, "remind_after_s": junk_numbers})))
    elif kind == "notifications":
        raw["notifications"] = draw(st.one_of(junk, st.fixed_dictionaries({}, optional={
            "routes": st.dictionaries(junk_strings, st.lists(junk_strings, max_size=3)),
            "default": st.lists(junk_strings, max_size=3)})))
    elif kind == "legacy_channels":
        raw["notifications"] = draw(st.lists(junk_channel, max_size=3))
    else:
        raw.setdefault("targets", {})["app_url"] = draw(junk_strings)


def _field_is_real(path: str, reason: str) -> bool:
    """Whether a problem's field path leads through the request's fields (list indexes and
    dict keys allowed); its last part may be an unknown key when the reason says so."""
    if path == "(request)":
        return True
    parts = path.split(".")
    node = RemediationRequest
    for i, part in enumerate(parts):
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            if part not in node.model_fields:
                # An unknown key (its name may hold dots), or a model validator's finding
                # on a sub-path it owns (e.g. notifications.routes.<recipient>).
                return reason.startswith("unknown field") or part in known_fields(
                    RemediationRequest, parts[:i])
            node = node.model_fields[part].annotation
        elif typing.get_origin(node) in (list, dict):
            if part.startswith(("'", '"')):
                return True  # a key shown quoted (dots, blanks, 100 KB): where it is is clear
            node = typing.get_args(node)[-1]  # an index or a key: any value
        else:
            return part == "[key]" or node is typing.Any or i > 0
    return True


def check(raw) -> None:
    model, problems = request_problems(raw)  # must not raise
    if model is not None:
        assert problems == []
        build_runbook(model)
        return
    assert problems
    for p in problems:
        assert p.reason.strip(), p
        assert len(p.reason) < 4000 and len(p.field) < 400, p  # never echoes 100 KB back
        assert _field_is_real(p.field, p.reason), p


@FUZZ
@given(mutated_requests())
def test_mutated_requests_are_valid_or_refused_field_by_field(raw):
    check(raw)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(junk, st.dictionaries(st.sampled_from(sorted(BASE)), junk, max_size=6)))
def test_arbitrary_json_is_valid_or_refused_field_by_field(raw):
    check(raw)


# --- valid requests ---------------------------------------------------------------------


LOWER = "abcdefghijklmnopqrstuvwxyz"


def matching(rule: names.NameRule, max_size: int = 30, middle: str = LOWER + "0123456789-",
             min_size: int = 2):
    """Names that follow ``rule``: a letter, then letters, digits and '-', ending with a
    letter or digit (every rule here accepts that shape within its length)."""
    return st.tuples(st.sampled_from(LOWER), st.text(middle, max_size=max_size - 2),
                     st.sampled_from(LOWER + "0123456789")).map("".join).filter(
        lambda s: len(s) >= min_size and rule.problem(s) is None)


people = st.from_regex(r"[a-z][a-z0-9._-]{0,15}", fullmatch=True)
domains = st.lists(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True), min_size=2,
                   max_size=3).map(".".join)
CPU_MEMORY = [("1", "512Mi"), ("1", "4Gi"), ("2", "8Gi"), ("4", "2Gi"), ("4", "16Gi"),
              ("8", "4Gi"), ("8", "32Gi")]


@st.composite
def valid_requests(draw) -> dict:
    cpu, memory = draw(st.sampled_from(CPU_MEMORY))
    remind = draw(st.integers(1, 30 * 86400))
    escalate = draw(st.integers(remind, 30 * 86400))
    timeout = draw(st.integers(escalate, 30 * 86400))
    approvers = draw(st.lists(people, max_size=4, unique=True))
    requester = draw(people)
    eligible = len(set(approvers) - {requester})
    gate = {"remind_after_s": remind, "escalate_after_s": escalate, "timeout_s": timeout,
            "approvers": approvers, "min_approvals": draw(st.integers(1, max(1, eligible)))
            if eligible else 1}
    if approvers and not eligible:
        gate["approvers"] = [*approvers, requester + "x"]
    window = draw(st.integers(0, 86400))
    interval = draw(st.integers(1, 300))
    min_i = draw(st.integers(2, 9))
    return {
        "incident_id": draw(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)),
        "requested_by": requester,
        "targets": {
            "project": draw(matching(names.PROJECT_ID, min_size=6)),
            "region": draw(st.sampled_from(["us-central1", "europe-west4", "asia-south2"])),
            "connector": draw(matching(names.VPC_CONNECTOR)),
            "sql_instance": draw(matching(names.SQL_INSTANCE, 98)),
            "backend_service": draw(matching(names.RUN_SERVICE, 49)),
            "auth_service": draw(matching(names.RUN_SERVICE)),
            "health_checks": draw(st.dictionaries(matching(names.COMPUTE_NAME), st.sampled_from(
                ["/", "/health", "/auth/health?x=1"]), max_size=3)),
            "backend_services": draw(st.lists(matching(names.COMPUTE_NAME), max_size=3,
                                              unique=True)),
            "certificate": draw(matching(names.COMPUTE_NAME)),
            "https_proxy": draw(matching(names.COMPUTE_NAME)),
            "redis_instance": draw(st.one_of(st.none(), matching(names.REDIS_INSTANCE))),
            "certificate_domains": draw(st.lists(domains, min_size=1, max_size=5, unique=True)),
            "required_secrets": draw(st.lists(matching(names.SECRET_ID, 60, LOWER + "_-ABC019"), max_size=5,
                                              unique=True)),
        },
        "desired": {
            "backend_cpu": cpu, "backend_memory": memory,
            "connector_min_instances": min_i,
            "connector_max_instances": draw(st.integers(min_i + 1, 10)),
            "health_check_interval_s": interval,
            "health_check_timeout_s": draw(st.integers(1, interval)),
            "backend_env": draw(st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,20}",
                                                              fullmatch=True).filter(
                lambda k: k not in names.RESERVED_ENV_VARS and not looks_like_credential(k)),
                st.text(max_size=20).filter(lambda v: "\x00" not in v), max_size=3)),
        },
        "approval": {"default": gate},
        "budgets": {f"phase_{n}_s": draw(st.integers(1, 30 * 86400)) for n in (1, 2, 3, 4)}
        | {"hard_limit_factor": draw(st.floats(1.0, 10.0))},
        "soak": {"window_s": window,
                 "sample_every_s": draw(st.integers(max(1, math.ceil(window / 1440)), 3600))},
    }


@VALID
@given(valid_requests())
def test_valid_requests_build_a_runbook(raw):
    model, problems = request_problems(raw)
    assert problems == [], problems
    book = build_runbook(model)
    assert book.phases
