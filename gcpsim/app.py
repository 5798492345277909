"""App factory: wires the store, clock, middleware, error handlers and routers."""
from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import (admin, application, certificates, cloud_run, cloud_sql, compute, faults, load_balancing,
               monitoring, operations, redis, secret_manager, time_series, vpc_access, world)
from .clock import Clock
from .context import Sim
from .errors import GoogleError
from .store import Store

log = logging.getLogger("gcpsim")
DB_FILE = "gcpsim.sqlite3"


def create_app(data_dir: str | Path, speed: float = 60.0) -> FastAPI:
    store = Store(Path(data_dir) / DB_FILE)
    sim = Sim(store, Clock(store, speed))
    if store.meta_get("world:projects") is None:
        world.load(sim, world.default_world(sim))

    app = FastAPI(title="gcpsim", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sim = sim

    @app.middleware("http")
    async def settle_and_inject(request: Request, call_next):
        # Operations due by now complete before anything observes the world.
        operations.settle(sim)
        api = faults.api_of(request.url.path)
        if api is not None:
            fault = faults.take(store, "http", api, request.method, request.url.path)
            if fault:
                return faults.http_error(fault).response()
        return await call_next(request)

    @app.exception_handler(GoogleError)
    async def google_error(_request: Request, exc: GoogleError):
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        # Unknown routes (e.g. Secret Manager ":access") and wrong verbs: Google's 404.
        code = 404 if exc.status_code in (404, 405) else exc.status_code
        return GoogleError(code, f"The requested URL {request.url.path} was not found on this server."
                           if code == 404 else str(exc.detail)).response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError):
        return GoogleError(400, f"Invalid request: {exc.errors()}").response()

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception):
        log.exception("internal error")
        return GoogleError(500, f"Internal simulator error: {exc!r}").response()

    for module in (admin, cloud_run, vpc_access, cloud_sql, compute, certificates, load_balancing, redis,
                   secret_manager, monitoring, time_series, application):
        app.include_router(module.router)
    return app
