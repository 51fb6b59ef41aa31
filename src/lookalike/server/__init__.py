"""The HTTP API and web page: `create_app(index_path, settings)` builds a FastAPI app around one
index. `lookalike serve` runs it with uvicorn."""

from __future__ import annotations

from lookalike.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003 - thin lazy re-export
    from lookalike.server.app import create_app as _create_app

    return _create_app(*args, **kwargs)
