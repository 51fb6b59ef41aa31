"""Errors as JSON: every error response is `{"status": N, "message": "..."}` (validation errors
add `errors`, the list FastAPI found)."""

from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookalike.errors import (
    ConfigError,
    ImageError,
    IndexLockedError,
    IndexMismatchError,
    LookalikeError,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status, a message for the client and optional headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class SafeJSONResponse(JSONResponse):
    """JSON that never fails on a file name: paths whose bytes are not UTF-8 (the catalog keeps
    them as they are, surrogate-escaped in Python) are shown with U+FFFD in their place."""

    def render(self, content: object) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return super().render(_displayable(content))


def _displayable(value: object) -> object:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_displayable(k): _displayable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_displayable(v) for v in value]
    return value


def problem(status: int, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return SafeJSONResponse(
        {"status": status, "message": message, **extra}, status, headers=headers
    )


def image_error_status(exc: ImageError) -> int:
    """415 when the upload is not an image at all, 413 when it is too large, 422 otherwise
    (truncated, corrupt)."""
    if exc.reason.startswith("not an image"):
        return 415
    if exc.reason.startswith("image too large"):
        return 413
    return 422


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = []
        for e in errors:
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query"))
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return problem(422, "; ".join(parts) or "invalid request", errors=_jsonable(errors))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return problem(500, "internal error (see the server log)")

    @app.exception_handler(OSError)
    async def _os(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.error("%s %s: disk full: %s", request.method, request.url.path, exc)
            return problem(507, f"the server's disk is full ({exc.filename or 'index folder'})")
        log.exception("%s %s failed", request.method, request.url.path)
        return problem(500, "internal error (see the server log)")

    @app.exception_handler(LookalikeError)
    async def _lookalike(_: Request, exc: LookalikeError) -> JSONResponse:
        if isinstance(exc, ImageError):
            return problem(image_error_status(exc), f"upload: {exc.reason}")
        if isinstance(exc, ConfigError):
            return problem(400, str(exc))
        if isinstance(exc, IndexLockedError):
            return problem(409, str(exc))
        if isinstance(exc, IndexMismatchError):
            return problem(500, str(exc))
        log.exception("unexpected lookalike error")
        return problem(500, str(exc))


def _jsonable(errors: list) -> list:
    out = []
    for e in errors:
        e = dict(e)
        e.pop("ctx", None)
        e.pop("input", None)
        e["loc"] = [str(p) for p in e.get("loc", ())]
        out.append(e)
    return out
