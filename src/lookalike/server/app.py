"""The app factory: `create_app(index_path, settings)`.

The index is opened once in the lifespan (for writing only when writes are enabled: the server
then holds the index's writer lock until it stops, and `lookalike index` on the same index
reports it locked) and the CNN is loaded before the first request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from lookalike import __version__
from lookalike.engine import Index
from lookalike.server.limits import BodyLimitMiddleware, CnnGate
from lookalike.server.models import errors
from lookalike.server.problems import SafeJSONResponse, install_handlers
from lookalike.server.settings import ServerSettings
from lookalike.server.state import ServerState
from lookalike.server.thumbnails import ThumbnailCache, default_cache_dir
from lookalike.server.uploads import reconcile

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
UPLOADS_NAME = "uploads"
# Multipart framing and small form fields on top of the image itself.
FORM_OVERHEAD = 64 * 1024

PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def create_app(index_path: str | Path, settings: ServerSettings | None = None) -> FastAPI:
    """Build the app serving the index at `index_path`. Nothing is opened until startup."""
    from fastapi_offline import FastAPIOffline

    settings = settings or ServerSettings()
    settings.check()
    index_path = Path(index_path).expanduser().absolute()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        index = await run_in_threadpool(Index.open, index_path, writable=settings.writable)
        try:
            uploads_dir = index.path / UPLOADS_NAME
            if index.writable:  # a crash may have left a kept file or a record behind
                await run_in_threadpool(reconcile, index, uploads_dir)
            # Load the CNN (and the vector index) now, not on the first request.
            await run_in_threadpool(_warm_up, index)
            thumbs_dir = (
                Path(settings.thumbnail_cache).expanduser()
                if settings.thumbnail_cache
                else default_cache_dir(index.path)
            )
            app.state.lookalike = ServerState(
                index=index,
                settings=settings,
                gate=CnnGate(settings.cnn_workers, settings.cnn_queue, settings.retry_after_s),
                thumbnails=ThumbnailCache(thumbs_dir, settings.max_pixels),
                uploads_dir=uploads_dir,
            )
            log.info("serving %s (%d images, writable=%s)", index.path, len(index), index.writable)
            yield
        finally:
            index.close()

    app = FastAPIOffline(
        title="lookalike",
        version=__version__,
        description="Search a lookalike index by image, by indexed image id, or by a region "
        "of an image. Errors are JSON objects `{status, message}`.",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    install_handlers(app)

    from lookalike.server import browse
    from lookalike.server.routes import router

    # Every route may meet the body limit (413).
    app.include_router(router, responses=errors(413))
    # browse's routes take query parameters (422); its rescan needs writes (401/403/409)
    app.include_router(browse.router, responses=errors(401, 403, 409, 413, 422))
    from lookalike.server import duplicates

    app.include_router(duplicates.router, responses=errors(413, 422))
    app.include_router(duplicates.page_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # noqa: ANN001, ANN202
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if not request.url.path.startswith("/docs") and not request.url.path.startswith("/redoc"):
            response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes + FORM_OVERHEAD)
    return app


def _warm_up(index: Index) -> None:
    _ = index.extractor.backbone
    if len(index):
        first = next(iter(index.catalog.records()), None)
        if first is not None:
            index.search_id(first.id, 1)
