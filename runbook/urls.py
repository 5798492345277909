"""Which URLs the worker may send requests to (server-side request forgery guard).

Two checks, both returning the reason a URL is refused (None: allowed):

- ``endpoint_url_problem``: static, for configuration and requests. Only ``https``, or
  ``http`` to a loopback host (127.0.0.0/8, ::1, ``localhost``) for local rehearsal
  against the simulator and local receivers. No userinfo, no link-local, metadata,
  unspecified, multicast or reserved address, no non-canonical numeric host (``2852039166``
  and ``0xa9.0xfe.0xa9.0xfe`` both reach 169.254.169.254 through ``inet_aton``).
- ``resolved_url_problem``: at send time, resolves the host as the connection will and
  applies the same address rules to every address it gets, so a name that points at the
  metadata server (or at this host) is refused before anything is sent.

Private RFC 1918 (10/8, 172.16/12, 192.168/16) and IPv6 unique-local (fc00::/7) addresses
are allowed on purpose: internal webhooks and internal load balancers live there. The
cloud metadata servers do not (they are link-local, or listed below by address).

What is left: a name resolved here could resolve differently a moment later when the
HTTP client connects (DNS rebinding); httpx 0.28 has no public hook to connect to an
address checked beforehand. Every send repeats the check, which keeps the window short.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_S = 10.0
LOOPBACK_NAMES = frozenset({"localhost"})
# Instance metadata servers by name (GCP, AWS) and by address (GCP/AWS/Azure/Oracle,
# AWS over IPv6, Alibaba Cloud's, which is not link-local).
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data",
                            "instance-data.ec2.internal"})
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # connecting to 0.x reaches this host
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# The last label of a host that URL parsers and inet_aton read as an IPv4 number.
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
# C0 controls, space, DEL and C1 controls: urlsplit silently drops some of them.
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def endpoint_url_problem(url: str, *, allow_loopback_http: bool = True) -> str | None:
    """Why the worker must not send requests to ``url`` (None: it may).

    The reasons never repeat the URL: it may carry a token (a Slack webhook's path)."""
    problem, _host = _static_check(url, allow_loopback_http)
    return problem


async def resolved_url_problem(url: str, *, allow_loopback_http: bool = True) -> str | None:
    """``endpoint_url_problem``, then the host resolved as a connection would resolve it:
    refused if any address is link-local, metadata, unspecified, multicast or reserved,
    or loopback when the URL's own host is not a loopback one.

    A failed resolution raises ``OSError`` (``socket.gaierror``): that may pass later,
    so callers treat it like any connection failure."""
    problem, host = _static_check(url, allow_loopback_http)
    if problem or host is None or _ip_literal(host) is not None:
        return problem  # an address literal was fully judged by the static check
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    async with asyncio.timeout(RESOLVE_TIMEOUT_S):  # TimeoutError is an OSError
        infos = await asyncio.get_running_loop().getaddrinfo(host.rstrip("."), port,
                                                             type=socket.SOCK_STREAM)
    host_is_loopback = _is_loopback_name(host)
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        reason = address_problem(address)
        if reason is None and _effective(address).is_loopback and not host_is_loopback:
            reason = ("is loopback (this worker's own host) while the URL names another "
                      "host; name localhost or 127.0.0.1 for a local receiver")
        if reason:
            return f"host resolves to {address}, which {reason}"
    return None


def url_host(url: str) -> str:
    """``scheme://host[:port]`` of a URL, for logs and messages: a webhook URL's path or
    query may be its token, and userinfo is a password."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(unparsable URL)"
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def address_problem(address: IPAddress) -> str | None:
    """Why an address is never a destination (None: allowed; loopback is the caller's call)."""
    ip = _effective(address)
    if address in METADATA_ADDRESSES or ip in METADATA_ADDRESSES:
        return "is a cloud instance metadata address"
    if ip.is_unspecified or (ip.version == 4 and ip in _THIS_NETWORK):
        return "is unspecified (0.0.0.0/8 or ::): it reaches this worker's own host"
    if ip.is_link_local:
        return "is link-local (169.254.0.0/16 or fe80::/10), where metadata servers live"
    if ip.is_multicast:
        return "is multicast"
    if ip.version == 4 and ip.is_reserved:  # 240.0.0.0/4, which holds the broadcast address
        return "is reserved (240.0.0.0/4 or broadcast)"
    return None


def _static_check(url: str, allow_loopback_http: bool) -> tuple[str | None, str | None]:
    """(reason refused or None, the lower-case host when there is one)."""
    if not isinstance(url, str) or not url:
        return "must be a non-empty URL", None
    if len(url) > MAX_URL_LENGTH:
        return f"longer than {MAX_URL_LENGTH} characters", None
    if _CONTROL.search(url):
        return "contains a space or a control character", None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:  # bad [IPv6] literal, port out of range
        return f"not a valid URL: {err}", None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        shown = f"scheme {scheme!r}" if scheme else "no scheme"
        return (f"{shown} is not allowed: use https:// (http:// only to a loopback host, "
                "for local rehearsal)"), None
    netloc = parts.netloc
    if "@" in netloc or parts.username is not None:
        return "must not carry credentials (user:password@) in the URL", None
    if "\\" in netloc:
        return "contains a backslash in the host part", None
    host = (parts.hostname or "").lower()
    if not host:
        return "the URL has no host", None
    if port == 0:
        return "port 0 is not a destination", None
    problem = _host_problem(host, netloc)
    if problem:
        return problem, host
    if scheme == "http":
        if not allow_loopback_http:
            return "http:// is not allowed here: use https://", host
        if not _is_loopback_host(host):
            return ("http:// is allowed only to a loopback host (127.0.0.0/8, ::1, localhost) "
                    "for local rehearsal: use https://"), host
    return None, host


def _host_problem(host: str, netloc: str) -> str | None:
    address = _ip_literal(host)
    if address is None and "[" in netloc:
        return "the bracketed host is not an IPv6 address"
    if address is not None:
        reason = address_problem(address)
        return f"the host {reason}" if reason else None
    if not host.isascii():
        return "the host must be ASCII (write an internationalised name as xn--...)"
    if not _HOST_NAME.fullmatch(host):
        return "the host is not a valid name or IP address"
    if _NUMERIC_LABEL.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]):
        return ("the host looks numeric but is not a dotted-quad IPv4 address "
                "(write it as a.b.c.d)")
    if host.rstrip(".") in METADATA_HOSTS:
        return "the host names a cloud instance metadata server"
    return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        # A zone ("fe80::1%eth0", "%25" in a URL) only says which interface to use.
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _effective(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 form reaches (mapped, NAT64, IPv4-compatible), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d (deprecated form)
            return ipaddress.IPv4Address(int(address))
    return address


def _is_loopback_name(host: str) -> bool:
    return host.rstrip(".") in LOOPBACK_NAMES


def _is_loopback_host(host: str) -> bool:
    if _is_loopback_name(host):
        return True
    address = _ip_literal(host)
    return address is not None and _effective(address).is_loopback
