"""``python -m gcpsim --port 8090 --host 127.0.0.1 --data-dir ./data/gcpsim --speed 60``

Logs as every service of the project does (observability/logs.py): REMEDIATION_LOG_FORMAT
text|json, level from --log-level, else LOG_LEVEL, else warning. Uvicorn's own loggers
go through the same handler (its access lines at DEBUG)."""
from __future__ import annotations

import argparse
import logging

import uvicorn

from observability.logs import LogConfigError, configure_logging

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gcpsim", description="Local Google Cloud API simulator")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback unless you need docker)")
    parser.add_argument("--data-dir", default="./data/gcpsim", help="where the SQLite world is persisted")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    parser.add_argument("--log-level", default=None,
                        help="debug, info, warning, ... (default: LOG_LEVEL, else warning)")
    args = parser.parse_args(argv)
    try:
        configure_logging("gcpsim", level=args.log_level, default_level="WARNING")
    except LogConfigError as err:
        parser.error(str(err))
    app = create_app(args.data_dir, args.speed)
    # log_config=None: uvicorn installs no handlers of its own; its records reach ours.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None,
                log_level=logging.getLogger().getEffectiveLevel(),
                timeout_graceful_shutdown=2, ws="websockets-sansio")


if __name__ == "__main__":
    main()
