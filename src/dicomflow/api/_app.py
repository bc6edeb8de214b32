"""The FastAPI application factory."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Response

from dicomflow import __version__
from dicomflow.api import _catalog, _health, _instances, _processing, _uploads, icometrix
from dicomflow.api._deps import Identities
from dicomflow.api._docs import install_docs
from dicomflow.api._fastlane import install_upload_fast_lane
from dicomflow.api._guard import RequestGuard
from dicomflow.api.errors import install_error_handlers
from dicomflow.config import Settings
from dicomflow.runtime import Application, open_application

API_PREFIX = "/api/v1"
"""Prefix of the native routes."""


def create_app(application: Application | Settings) -> FastAPI:
    """Build the HTTP API over the process's application.

    Parameters
    ----------
    application
        The :class:`~dicomflow.runtime.Application` of this process, built once by its entry point
        (``dicomflow serve`` builds one per HTTP process and runs the upload janitor once, in its
        supervisor); its owner closes it. Given :class:`~dicomflow.config.Settings` instead, the app is an
        installation of its own: it opens the application (migrating the index), resumes interrupted
        upload imports and expires abandoned uploads in its lifespan, and closes it at shutdown.

    Returns
    -------
    FastAPI
        ``GET /health`` (alive) and ``GET /ready`` (index and store reachable, else 503) are open, and
        ``GET /metrics`` unless ``http.public_metrics`` says otherwise; every route under ``/api/v1`` needs
        ``Authorization: Bearer <token>``, checked with the body's size before the body is read
        (:mod:`~dicomflow.api._guard`).
        OpenAPI documentation is served at ``/docs`` and ``/redoc`` with local assets (public unless
        ``http.public_docs`` is off). ``app.state`` keeps ``application`` and, for the routes, its
        ``settings``, ``engine``, ``store``, ``flow`` and ``uploads``.
    """
    if isinstance(application, Settings):
        return _build(open_application(application), owned=True)
    return _build(application, owned=False)


def _build(application: Application, *, owned: bool) -> FastAPI:
    settings = application.settings
    engine = application.engine

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        if owned:
            threading.Thread(
                target=application.sweep_uploads, args=(stop,), name="upload-janitor", daemon=True
            ).start()
        yield
        stop.set()
        app.state.identities.close()
        if owned:
            application.close()

    app = FastAPI(title="dicomflow", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.application = application
    app.state.settings = settings
    app.state.engine = engine
    app.state.identities = Identities(application)
    app.state.store = application.store
    app.state.flow = application.flow
    app.state.uploads = application.uploads
    app.state.ingest_limiter = anyio.CapacityLimiter(
        settings.uploads.ingest_threads
    )  # files ingested at once
    install_error_handlers(app)
    app.add_middleware(RequestGuard, fastapi_app=app)  # outermost: token and body size before any read
    install_docs(app)
    app.add_api_route("/health", health, methods=["GET"], summary="Liveness", tags=["health"])
    app.add_api_route("/ready", _health.ready, methods=["GET"], summary="Readiness", tags=["health"])
    app.add_api_route(
        "/metrics",
        _health.metrics_page,
        methods=["GET"],
        summary="Prometheus metrics",
        tags=["health"],
        response_class=Response,
    )
    app.include_router(_uploads.router, prefix=API_PREFIX, tags=["uploads"])  # first: matched per file sent
    app.include_router(_catalog.router, prefix=API_PREFIX, tags=["catalogue"])
    app.include_router(_instances.router, prefix=API_PREFIX, tags=["instances"])
    app.include_router(_processing.router, prefix=API_PREFIX, tags=["processing"])
    app.include_router(icometrix.router, tags=["icometrix-compatible"])
    if settings.performance.fast_paths:
        install_upload_fast_lane(app)  # PUT .../files/{name}, the hot path of uploads: the first route
    return app


def health() -> dict[str, str]:
    """Answer while the process is up; needs no token."""
    return {"status": "ok"}
