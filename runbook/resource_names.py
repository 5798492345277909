"""Google Cloud's documented name rules for every resource a request names.

A name that breaks them would reach the diagnosis (or a client library) and fail there
with a library error, or, worse, be accepted where it is only compared (a gate, a log
line). Checking here refuses the request before anything runs, naming the field, the
value (shortened, with control characters escaped) and the rule.

Each pattern cites where it comes from; a rule we could only read from a secondary
source says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator


@dataclass(frozen=True)
class NameRule:
    what: str  # "project id", "Cloud Run service name", ...
    pattern: str  # anchored regular expression
    rule: str  # the rule in words, for the error
    source: str

    def problem(self, value: str) -> str | None:
        """Why ``value`` breaks this rule, or None when it follows it."""
        if re.fullmatch(self.pattern, value):
            return None
        return f"{shown(value)} is not a valid {self.what}: {self.rule} (pattern {self.pattern})"


def shown(value: str, limit: int = 40) -> str:
    """``value`` for an error message: repr (control characters escaped), cut when long."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


_RFC1035 = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"

# Resource Manager: "6 to 30 lowercase letters, digits, or hyphens; must start with a
# letter; trailing hyphens are prohibited". Older domain-scoped ids ("example.com:proj")
# still exist and are accepted with their domain prefix.
PROJECT_ID = NameRule(
    "project id", r"^(?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$",
    "6-30 lowercase letters, digits or '-', starting with a letter, not ending with '-'",
    "Resource Manager: creating and managing projects")
# Google publishes the list of regions, not a grammar; every region is
# <area>-<direction><digits> (us-central1, europe-west4, northamerica-northeast2).
# Unverified as a rule: a new region of another shape would need this widened.
REGION = NameRule(
    "region", r"^[a-z]{2,}-[a-z]{2,}[0-9]{1,2}$",
    "a Google Cloud region such as us-central1 or europe-west1", "Compute: regions and zones")
# The VPC Access API's own check (its 400 quotes ^[a-z][-a-z0-9]{0,23}[a-z0-9]$, from
# memory: unverified). The console's older, stricter advice ("less than 21 characters,
# hyphens count as two") is not enforced by the API and is not applied here.
VPC_CONNECTOR = NameRule(
    "Serverless VPC Access connector name", r"^[a-z][-a-z0-9]{0,23}[a-z0-9]$",
    "2-25 lowercase letters, digits or '-', starting with a letter, not ending with '-'",
    "vpcaccess v1 connectors.create (pattern unverified)")
# sqladmin v1: "lowercase letters, numbers, and hyphens, and it must start with a letter.
# This ID can have a maximum length of 98 characters."
SQL_INSTANCE = NameRule(
    "Cloud SQL instance id", r"^[a-z][a-z0-9-]{0,97}$",
    "up to 98 lowercase letters, digits or '-', starting with a letter",
    "Cloud SQL Admin API v1, instance id")
# run v2 CreateServiceRequest.service_id: starts with a letter, no trailing hyphen,
# fewer than 50 characters.
RUN_SERVICE = NameRule(
    "Cloud Run service name", r"^(?=.{1,49}$)[a-z]([-a-z0-9]*[a-z0-9])?$",
    "1-49 lowercase letters, digits or '-', starting with a letter, not ending with '-'",
    "Cloud Run Admin API v2, service_id")
# Compute Engine names (health checks, backend services, SSL certificates, target
# proxies): RFC 1035 labels, 1-63 characters.
COMPUTE_NAME = NameRule(
    "Compute Engine resource name", _RFC1035,
    "1-63 lowercase letters, digits or '-', starting with a letter, not ending with '-'",
    "Compute Engine: naming resources (RFC 1035)")
# redis v1 CreateInstanceRequest.instance_id: lowercase letters, numbers and hyphens,
# starts with a letter, 1-40 characters, ends with a number or a letter.
REDIS_INSTANCE = NameRule(
    "Memorystore for Redis instance id", r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$",
    "1-40 lowercase letters, digits or '-', starting with a letter, not ending with '-'",
    "Memorystore for Redis API v1, instance_id")
# Secret Manager: "a string with a maximum length of 255 characters and can contain
# uppercase and lowercase letters, numerals, and the hyphen and underscore characters".
SECRET_ID = NameRule(
    "Secret Manager secret id", r"^[a-zA-Z0-9_-]{1,255}$",
    "1-255 letters, digits, '-' or '_'", "Secret Manager: creating secrets")
# Cloud Run env var names: Google documents only "must not be empty or contain '='" and
# a few reserved names; the Kubernetes rule it inherits (a C-like identifier with '.' and
# '-') is applied so a name cannot smuggle whitespace or control characters.
ENV_VAR_NAME = NameRule(
    "environment variable name", r"^[-._a-zA-Z][-._a-zA-Z0-9]{0,254}$",
    "1-255 letters, digits, '_', '.' or '-', not starting with a digit",
    "Cloud Run: configure environment variables")
RESERVED_ENV_VARS = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")
ENV_VALUE_MAX_CHARS = 32768  # Cloud Run's documented maximum for one value (32 KiB)

# A path the load balancer's health check (or the startup probe) requests: printable
# ASCII from '/' on, no spaces (RFC 3986 needs them escaped). 1024 is our bound.
HTTP_PATH = NameRule(
    "HTTP request path", r"^/[!-~]{0,1023}$",
    "'/' then up to 1023 printable ASCII characters, no spaces (escape them as %20)",
    "RFC 3986; Compute HealthCheck.requestPath")

# --- Google-managed (classic Compute) SSL certificate domains --------------------------

MANAGED_CERT_MAX_DOMAINS = 100
# GKE/Load Balancing "Google-managed SSL certificates" limitations: up to 100 non-wildcard
# domains; each domain at most 63 characters (read from a page quoting Google's
# limitation, not Google's own page: unverified).
MANAGED_CERT_DOMAIN_MAX_CHARS = 63
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def managed_certificate_domain_problem(domain: str) -> str | None:
    """Why a Google-managed certificate cannot cover ``domain``, or None."""
    if domain.startswith("*"):
        return (f"{shown(domain)}: Google-managed SSL certificates do not support wildcard "
                "domains; list each host name")
    if len(domain) > MANAGED_CERT_DOMAIN_MAX_CHARS:
        return (f"{shown(domain)}: a Google-managed certificate's domain may be at most "
                f"{MANAGED_CERT_DOMAIN_MAX_CHARS} characters")
    labels = domain.split(".")
    if (len(labels) < 2 or not all(_DNS_LABEL.fullmatch(lab) for lab in labels)
            or labels[-1].isdigit()):
        return (f"{shown(domain)} is not a DNS host name: lowercase labels of letters, digits "
                "and '-' (not starting or ending with '-'), separated by '.', at least two "
                "labels, no trailing dot")
    return None


# --- the rules as request field types ---------------------------------------------------


def _checked(rule: NameRule) -> AfterValidator:
    def check(value: str) -> str:
        problem = rule.problem(value)
        if problem:
            raise ValueError(problem)
        return value
    return AfterValidator(check)


def _domain(value: str) -> str:
    problem = managed_certificate_domain_problem(value)
    if problem:
        raise ValueError(problem)
    return value


ProjectId = Annotated[str, _checked(PROJECT_ID)]
Region = Annotated[str, _checked(REGION)]
ConnectorName = Annotated[str, _checked(VPC_CONNECTOR)]
SqlInstanceId = Annotated[str, _checked(SQL_INSTANCE)]
RunServiceName = Annotated[str, _checked(RUN_SERVICE)]
ComputeName = Annotated[str, _checked(COMPUTE_NAME)]
RedisInstanceId = Annotated[str, _checked(REDIS_INSTANCE)]
SecretId = Annotated[str, _checked(SECRET_ID)]
HttpPath = Annotated[str, _checked(HTTP_PATH)]
ManagedDomain = Annotated[str, AfterValidator(_domain)]
