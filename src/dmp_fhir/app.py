"""The ASGI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from . import __version__
from .audit import AuditTrail, NullAuditor
from .auth.tokens import TokenVerifier
from .config import Settings, get_settings
from .policy.access import AccessControl, TokenAccess
from .policy.matrix import load_matrix
from .portal import install_portal
from .profiles import default_conformance
from .rest import batch, conformance_routes, operation_routes, resource_routes, search_routes, system_routes
from .rest.capability import capability_statement
from .rest.errors import install_error_handlers
from .rest.middleware import HardeningMiddleware
from .search.indexes import index_fields
from .storage import Database, ResourceStore
from .storage.store import format_instant, now_utc

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    database: Database | None = None,
    *,
    access: AccessControl | None = None,
    auditing: bool = True,
) -> FastAPI:
    """Build the app. ``database`` is created from ``settings.mongodb_url`` when not given;
    ``access`` defaults to bearer tokens + the DMP policy (tests of the REST mechanics pass
    ``OpenAccess()``); ``auditing=False`` exists for the reference benchmark only."""
    settings = settings or get_settings()
    matrix = load_matrix()
    conformance = default_conformance()  # a profile the validator cannot check fails here, at start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = database is None
        if database is None:
            if not settings.mongodb_url:
                raise RuntimeError("MONGODB_URL is not set (the CLI starts an embedded database).")
            db = Database(settings.mongodb_url, settings.db)
        else:
            db = database
        await db.connect()
        await db.ensure_indexes(index_fields())
        app.state.database = db
        app.state.store = ResourceStore(db)
        # Transactions cut short by a crash: finish the decided ones before serving anything,
        # then keep sweeping for those whose owner disappeared (storage/journal.py).
        await app.state.store.journal.recover()
        sweeper = asyncio.create_task(
            app.state.store.journal.sweep(interval=max(0.5, settings.transaction_timeout_seconds / 4))
        )
        trail = AuditTrail(db, base_url=settings.base_url)
        await trail.start()
        app.state.audit = trail if auditing else NullAuditor()
        app.state.access = access or TokenAccess(
            TokenVerifier(settings), app.state.store, matrix, app.state.audit
        )
        try:
            yield
        finally:
            sweeper.cancel()
            await trail.stop()
            if owned:
                await db.close()

    app = FastAPI(
        title="dmp-fhir",
        version=__version__,
        description="FHIR R4 server for the French shared health record (DMP).",
        lifespan=lifespan,
        docs_url=f"{settings.base_path}/_docs",
        redoc_url=None,
        openapi_url=f"{settings.base_path}/_openapi.json",
    )
    app.state.settings = settings
    app.state.matrix = matrix
    app.state.conformance = conformance
    app.state.capability = capability_statement(settings, conformance, started=format_instant(now_utc()))
    install_error_handlers(app)
    if settings.cors_origins:  # closed by default: no CORS header unless origins are configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Accept",
                "Prefer",
                "If-Match",
                "If-None-Match",
                "If-None-Exist",
                "X-Request-ID",
            ],
            expose_headers=["ETag", "Location", "Last-Modified", "Content-Location", "X-Request-ID"],
            max_age=600,
        )
    app.add_middleware(HardeningMiddleware, settings=settings)  # outermost: hardens every answer
    app.include_router(system_routes.build_router(), prefix=settings.base_path)
    app.include_router(batch.build_router(), prefix=settings.base_path)
    app.include_router(conformance_routes.build_router(), prefix=settings.base_path)
    app.include_router(search_routes.build_router(), prefix=settings.base_path)
    app.include_router(operation_routes.build_router(), prefix=settings.base_path)
    app.include_router(resource_routes.build_router(), prefix=settings.base_path)
    if settings.portal_enabled:  # the patient's pages: they call the API above, in process
        install_portal(app, settings, matrix)
    return app
