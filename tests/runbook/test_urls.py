"""Which URLs the worker may send to: the static rule and resolve-then-check."""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.probes import ProbeActivities
from activities.settings import Settings
from runbook.activity_io import ProbeParams, SampleErrorRateParams, WebSocketProbeParams
from runbook.request import request_problems
from tests.activities.notify_receivers import fake_dns, record_sends
from runbook.urls import MAX_URL_LENGTH, endpoint_url_problem, resolved_url_problem, url_host


@pytest.mark.parametrize("url", [
    "https://example.com/hook",
    "https://hooks.slack.com/services/T0/B0/XYZ?x=1",
    "HTTPS://Example.COM:8443/path",
    "http://127.0.0.1:8080",
    "http://127.9.9.9/",
    "http://localhost:8090/health",
    "http://[::1]:9000/",
    "https://10.1.2.3/hook",  # RFC 1918: internal webhooks are allowed
    "https://192.168.0.10/",
    "https://[fd12:3456::1]/",  # unique-local, not the AWS metadata address
    "https://xn--bcher-kva.example/",
    "https://internal_host.corp.example./x",
])
def test_allowed_urls(url):
    assert endpoint_url_problem(url) is None


@pytest.mark.parametrize("url, reason", [
    ("file:///etc/passwd", "scheme 'file' is not allowed: use https://"),
    ("gopher://example.com:70/_", "scheme 'gopher' is not allowed"),
    ("ftp://x", "scheme 'ftp' is not allowed"),
    ("//example.com/x", "no scheme is not allowed"),
    ("http://169.254.169.254/computeMetadata/v1/", "the host is a cloud instance metadata address"),
    ("https://169.254.169.254/", "metadata address"),
    ("http://metadata.google.internal/", "the host names a cloud instance metadata server"),
    ("https://METADATA.google.internal./computeMetadata/v1/", "metadata server"),
    ("https://metadata/", "metadata server"),
    ("https://[fd00:ec2::254]/", "metadata address"),
    ("https://100.100.100.200/", "metadata address"),
    ("http://[fe80::1]/", "link-local"),
    ("https://[fe80::1%25eth0]/", "link-local"),
    ("https://169.254.10.1/", "link-local"),
    ("https://[::ffff:169.254.169.254]/", "metadata address"),  # IPv4-mapped
    ("https://[64:ff9b::a9fe:a9fe]/", "metadata address"),  # NAT64
    ("http://0.0.0.0/", "unspecified"),
    ("https://0.1.2.3/", "unspecified"),
    ("https://[::]/", "unspecified"),
    ("https://224.0.0.251/", "multicast"),
    ("https://[ff02::1]/", "multicast"),
    ("https://255.255.255.255/", "reserved"),
    ("https://user:pw@host/", "must not carry credentials"),
    ("https://token@hooks.example.com/", "must not carry credentials"),
    ("https://evil.example\\@169.254.169.254/", "must not carry credentials"),
    ("https://2852039166/", "looks numeric but is not a dotted-quad"),
    ("https://0xa9.0xfe.0xa9.0xfe/", "looks numeric"),
    ("https://0251.0376.0251.0376/", "looks numeric"),
    ("https://169.254.43518/", "looks numeric"),
    ("https:///path", "the URL has no host"),
    ("https://", "the URL has no host"),
    ("https://exämple.com/", "the host must be ASCII"),
    ("https://ex%61mple.com/", "not a valid name"),
    ("https://example.com:99999/", "not a valid URL: Port out of range"),
    ("https://[not-ipv6]/", "not a valid URL"),
    ("https://example.com/\nHost: evil", "a space or a control character"),
    ("https://exa\tmple.com/", "a space or a control character"),
    ("https://example.com/\x85", "a space or a control character"),
    ("https://example.com/" + "a" * MAX_URL_LENGTH, f"longer than {MAX_URL_LENGTH}"),
    ("http://example.com", "http:// is allowed only to a loopback host"),
    ("http://10.0.0.8/hook", "http:// is allowed only to a loopback host"),
    ("", "must be a non-empty URL"),
])
def test_refused_urls_say_why(url, reason):
    problem = endpoint_url_problem(url)
    assert problem is not None and reason in problem, problem


def test_reasons_never_repeat_the_url():
    for url in ("https://user:s3cr3tpw@hooks.example.com/", "http://hooks.example.com/T0K3N",
                "https://169.254.169.254/T0K3N"):
        problem = endpoint_url_problem(url)
        assert problem and "s3cr3tpw" not in problem and "T0K3N" not in problem


def test_http_to_loopback_only_when_rehearsal_is_allowed():
    assert "http:// is not allowed here" in endpoint_url_problem(
        "http://127.0.0.1:8080", allow_loopback_http=False)
    assert endpoint_url_problem("https://127.0.0.1:8443", allow_loopback_http=False) is None


def test_url_host_keeps_only_scheme_host_and_port():
    assert url_host("https://user:pw@hooks.slack.com/services/T0/B0/TOKEN?x=1") == \
        "https://hooks.slack.com"
    assert url_host("http://[::1]:8080/x") == "http://[::1]:8080"


# -- resolve-then-check ------------------------------------------------------------------

class _Dns(dict):
    asked: list[str]


@pytest.fixture
def dns(monkeypatch) -> _Dns:
    """Answers for made-up names, filled in by each test."""
    answers = _Dns()
    answers.asked = fake_dns(monkeypatch, answers)
    return answers


async def test_a_name_resolving_to_the_metadata_server_is_refused(dns):
    dns["hooks.attacker.example"] = ["203.0.113.7", "169.254.169.254"]
    problem = await resolved_url_problem("https://hooks.attacker.example/hook")
    assert problem == ("host resolves to 169.254.169.254, which is a cloud instance metadata "
                       "address")


@pytest.mark.parametrize("address, reason", [
    ("169.254.1.1", "link-local"), ("fe80::5", "link-local"), ("0.0.0.0", "unspecified"),
    ("::", "unspecified"), ("239.1.1.1", "multicast"), ("::ffff:169.254.169.254", "metadata"),
    ("fd00:ec2::254", "metadata"), ("127.0.0.1", "is loopback"), ("::1", "is loopback"),
])
async def test_every_resolved_address_is_judged(dns, address, reason):
    dns["hook.example"] = [address]
    problem = await resolved_url_problem("https://hook.example/x")
    shown = ipaddress.ip_address(address)  # as Python prints it (::ffff:a9fe:a9fe on 3.11)
    assert problem and problem.startswith(f"host resolves to {shown}, which") \
        and reason in problem, problem


async def test_public_and_private_answers_pass(dns):
    dns["hooks.corp.example"] = ["10.20.30.40", "2001:db8::7"]
    assert await resolved_url_problem("https://hooks.corp.example/x") is None


async def test_loopback_is_allowed_when_the_url_names_loopback(dns):
    assert await resolved_url_problem("http://localhost:8090/health") is None
    assert await resolved_url_problem("http://127.0.0.1:8090/health") is None
    assert await resolved_url_problem("https://[::1]:8443/") is None


async def test_address_literals_are_not_resolved_and_static_refusals_skip_dns(dns):
    assert "metadata" in await resolved_url_problem("http://169.254.169.254/")
    assert "metadata" in await resolved_url_problem("http://metadata.google.internal/")
    assert "http:// is allowed only" in await resolved_url_problem("http://hook.example/")
    assert await resolved_url_problem("https://10.0.0.1/") is None
    assert dns.asked == []


async def test_a_name_that_does_not_resolve_raises_for_the_caller_to_retry(monkeypatch):
    def fail(*_args, **_kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(OSError):
        await resolved_url_problem("https://nowhere.example/")


# -- the request's app_url ---------------------------------------------------------------

@pytest.mark.parametrize("app_url, reason", [
    ("http://169.254.169.254/computeMetadata/v1/", "metadata"),
    ("http://metadata.google.internal/", "metadata"),
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("http://api.example.com", "http:// is allowed only to a loopback host"),
    ("https://u:p@api.example.com", "credentials"),
])
def test_targets_app_url_refuses_what_the_worker_must_not_probe(app_url, reason):
    _req, problems = request_problems({"targets": {"app_url": app_url}})
    assert [p.field for p in problems] == ["targets.app_url"]
    assert reason in problems[0].reason


@pytest.mark.parametrize("app_url", ["http://127.0.0.1:8090", "https://api.example.com",
                                     "https://10.0.0.5:8443"])
def test_targets_app_url_accepts_https_and_the_local_simulator(app_url):
    req, problems = request_problems({"targets": {"app_url": app_url}})
    assert problems == [] and req.targets.app_url == app_url


# -- send time: the probes of a request's app_url ----------------------------------------

async def test_a_probe_never_reaches_a_refused_app_url(dns, monkeypatch):
    dns["app.attacker.example"] = ["169.254.169.254"]
    sent = record_sends(monkeypatch)
    probes = ProbeActivities(Settings(backend="gcp", app_url="https://app.example.com"))
    for activity_fn, params in (
            (probes.probe_health, ProbeParams(base_url="https://app.attacker.example",
                                              path="/health", max_latency_ms=1000)),
            (probes.sample_error_rate,
             SampleErrorRateParams(base_url="https://app.attacker.example", requests=3)),
            (probes.probe_websocket, WebSocketProbeParams(base_url="https://app.attacker.example"))):
        with pytest.raises(ApplicationError) as err:
            await ActivityEnvironment().run(activity_fn, params)
        assert (err.value.type, err.value.non_retryable) == ("InvalidArgument", True)
        assert err.value.message.startswith(
            "probe https://app.attacker.example: destination refused, nothing was sent: host "
            "resolves to 169.254.169.254, which is a cloud instance metadata address")
    assert sent == []


async def test_the_workers_own_app_url_is_trusted_as_configured(dns, monkeypatch):
    # Compose reaches the simulator as http://gcpsim:8090: operator configuration, not a
    # request, so it is not held to the request rule (http to loopback only).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    dns["gcpsim"] = ["127.0.0.1"]
    sent = record_sends(monkeypatch)
    probes = ProbeActivities(Settings(backend="gcp", app_url=f"http://gcpsim:{closed_port}"))
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(probes.probe_health,
                                        ProbeParams(path="/health", max_latency_ms=1000))
    assert (err.value.type, err.value.non_retryable) == ("Transport", False)
    assert sent == ["gcpsim"]


class _Redirecting(BaseHTTPRequestHandler):
    """Answers every GET with a redirect to ``target`` and records the paths asked."""

    protocol_version = "HTTP/1.1"  # websockets reads nothing older
    target = ""
    asked: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).asked.append(self.path)
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


async def test_a_websocket_probe_does_not_follow_a_redirect():
    # Followed, the redirect would get the probe token (sent once the socket is open).
    servers = []
    for name in ("first", "second"):
        handler = type(f"_{name}", (_Redirecting,), {"asked": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    first, second = servers
    first.RequestHandlerClass.target = f"ws://127.0.0.1:{second.server_port}/ws"
    try:
        probes = ProbeActivities(Settings())
        with pytest.raises(ApplicationError) as err:
            await ActivityEnvironment().run(probes.probe_websocket, WebSocketProbeParams(
                base_url=f"http://127.0.0.1:{first.server_port}", max_latency_ms=2000))
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert err.value.type == "StepFailed" and "handshake refused with HTTP 302" in str(err.value)
    assert first.RequestHandlerClass.asked == ["/ws"]
    assert second.RequestHandlerClass.asked == []
