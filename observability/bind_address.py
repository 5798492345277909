"""The ``host:port`` a worker endpoint listens on (metrics, health), read from an
environment variable: one parser, so both refuse the same mistakes the same way."""

from __future__ import annotations


def parse_bind(value: str, variable: str) -> tuple[str, int]:
    """``host:port`` (``[::]:8081`` for IPv6) -> (host without brackets, port); a
    ValueError naming ``variable`` and the reason otherwise."""
    host, sep, port_text = value.strip().rpartition(":")
    problem = None
    if not sep or not host:
        problem = "expected host:port, e.g. 0.0.0.0:8081"
    elif not port_text.isdigit() or not 0 < int(port_text) < 65536:
        problem = f"port {port_text!r} is not a number from 1 to 65535"
    elif host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        problem = "an IPv6 host goes in brackets, e.g. [::]:8081"
    if problem:
        raise ValueError(f"{variable}={value!r}: {problem}")
    return host.strip("[]"), int(port_text)
