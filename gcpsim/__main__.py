"""``python -m gcpsim --port 8090 --host 127.0.0.1 --data-dir ./data/gcpsim --speed 60``"""
from __future__ import annotations

import argparse
import logging

import uvicorn

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gcpsim", description="Local Google Cloud API simulator")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback unless you need docker)")
    parser.add_argument("--data-dir", default="./data/gcpsim", help="where the SQLite world is persisted")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(args.data_dir, args.speed)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=2, ws="websockets-sansio")


if __name__ == "__main__":
    main()
