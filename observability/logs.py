"""Log setup shared by the worker, gcpsim, the approval service and the CLI.

One handler on the root logger, in one of two formats:

- ``text`` (the default): one readable line, the run context appended
  (``... [workflow_id=remediation-1278-ab12 step=expand-sql attempt=2 resource=...]``);
- ``json``: one JSON object per line with ``timestamp``, ``level``, ``logger``,
  ``message``, ``service`` and, when known, ``workflow_id``, ``run_id``, ``step``,
  ``attempt``, ``resource`` (for log collectors: compose and Kubernetes).

The context comes from the SDK's ``temporal_activity`` / ``temporal_workflow`` extras
(activity.logger, workflow.logger), from the running activity for any other logger
called inside one, and from a caller's ``extra={"resource": ...}``.

HTTP client and access-log chatter (a soak samples /health every few seconds) is demoted
to DEBUG, so it shows only with LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from temporalio import activity

ENV_LOG_FORMAT = "REMEDIATION_LOG_FORMAT"
ENV_LOG_LEVEL = "LOG_LEVEL"
LOG_FORMATS = ("text", "json")

# The run context every event carries when it is known, in this order.
CONTEXT_FIELDS = ("workflow_id", "run_id", "step", "attempt", "resource")

# Loggers whose INFO records are per-request chatter, not events worth reading.
CHATTER_LOGGERS = ("httpx", "httpcore", "urllib3", "aiohttp.access", "aiohttp.client",
                   "uvicorn.access", "hpack", "websockets")


class LogConfigError(ValueError):
    """A logging setting from the environment that cannot be used."""


def configure_logging(service: str, *, fmt: str | None = None, level: str | None = None,
                      default_level: str = "INFO", stream: TextIO | None = None,
                      ) -> logging.Handler:
    """Install the process's log handler on the root logger and return it.

    ``fmt``: "text" or "json"; default REMEDIATION_LOG_FORMAT, else "text".
    ``level``: a level name (e.g. a --log-level flag); default LOG_LEVEL, else
    ``default_level`` (the CLI's is WARNING, so its output stays clean).
    ``stream``: default stderr.
    """
    chosen_fmt = _log_format(fmt)
    if level:
        threshold = _log_level(level, "level")
    elif os.environ.get(ENV_LOG_LEVEL):
        threshold = _log_level(os.environ[ENV_LOG_LEVEL], ENV_LOG_LEVEL)
    else:
        threshold = _log_level(default_level, "default_level")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(json_formatter(service) if chosen_fmt == "json" else TextFormatter())
    handler.addFilter(RunContextFilter())
    handler.addFilter(DemoteChatter(threshold))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    return handler


def _log_format(fmt: str | None) -> str:
    source = "fmt" if fmt is not None else ENV_LOG_FORMAT
    value = (fmt if fmt is not None else os.environ.get(ENV_LOG_FORMAT, "") or "text")
    value = value.strip().lower()
    if value not in LOG_FORMATS:
        raise LogConfigError(f"{source}={value!r} is not a log format: use one of "
                             f"{', '.join(LOG_FORMATS)}")
    return value


def _log_level(name: str, source: str) -> int:
    level = logging.getLevelName(name.strip().upper())
    if not isinstance(level, int):
        raise LogConfigError(f"{source}={name!r} is not a log level: use DEBUG, INFO, WARNING, "
                             "ERROR or CRITICAL")
    return level


class RunContextFilter(logging.Filter):
    """Put the run context on the record as flat fields (see CONTEXT_FIELDS)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = run_context(record)
        for key, value in context.items():
            if getattr(record, key, None) in (None, ""):
                setattr(record, key, value)
        # Flattened above: the nested copies would repeat them in every JSON event.
        for nested in ("temporal_activity", "temporal_workflow"):
            if nested in record.__dict__:
                delattr(record, nested)
        return True


def run_context(record: logging.LogRecord) -> dict[str, Any]:
    """workflow_id, run_id, step, attempt of the record's activity or workflow."""
    found: dict[str, Any] = {}
    details = getattr(record, "temporal_activity", None)
    if isinstance(details, dict):
        found = {"workflow_id": details.get("workflow_id"),
                 "run_id": details.get("workflow_run_id"),
                 "step": step_of(str(details.get("activity_id") or "")),
                 "attempt": details.get("attempt")}
    elif activity.in_activity():  # any logger, called inside an activity
        info = activity.info()
        found = {"workflow_id": info.workflow_id, "run_id": info.workflow_run_id,
                 "step": step_of(info.activity_id), "attempt": info.attempt}
    workflow_details = getattr(record, "temporal_workflow", None)
    if isinstance(workflow_details, dict):
        found.setdefault("workflow_id", workflow_details.get("workflow_id"))
        found.setdefault("run_id", workflow_details.get("run_id"))
    return {k: v for k, v in found.items() if v not in (None, "")}


def step_of(activity_id: str) -> str | None:
    """The runbook step an activity runs: the workflow schedules every step (and its
    undo, ``undo-<step>``) under the step's id. Other activities (diagnose, notifications,
    soak samples, leases) get the SDK's sequence number, which names no step."""
    return None if not activity_id or activity_id.isdigit() else activity_id


class DemoteChatter(logging.Filter):
    """Records of CHATTER_LOGGERS become DEBUG; dropped unless the threshold lets DEBUG
    through (the handler saw them at their original level)."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and record.levelno < logging.WARNING and \
                is_chatter(record.name):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.threshold


def is_chatter(logger_name: str) -> bool:
    return any(logger_name == n or logger_name.startswith(n + ".") for n in CHATTER_LOGGERS)


# Extras that repeat the message: uvicorn's ANSI-coloured copy for terminals, the SDK
# core's log entry object (its message and fields are already in "message").
NOT_LOGGED_EXTRAS = ("color_message", "temporal_log")


def json_formatter(service: str) -> JsonFormatter:
    return JsonFormatter(["levelname", "name", "message"],
                         rename_fields={"levelname": "level", "name": "logger"},
                         static_fields={"service": service}, timestamp=True,
                         reserved_attrs=[*RESERVED_ATTRS, *NOT_LOGGED_EXTRAS])


class TextFormatter(logging.Formatter):
    """``2026-11-29 23:30:01,123 INFO activities.mutation message [workflow_id=... step=...]``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS
                           if getattr(record, k, None) not in (None, ""))
        if not context:
            return line
        first, newline, rest = line.partition("\n")  # keep a traceback below the context
        return f"{first} [{context}]{newline}{rest}"
