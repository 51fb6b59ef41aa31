"""GET /api/duplicates: the duplicate finder's groups, as `lookalike dupes --json` prints them.

Finding duplicates reads every vector and verifies candidate pairs (seconds to minutes on a big
index), so the answer is computed in the thread pool, one computation at a time, and kept until
the index changes (the catalog's generation) or other options are asked for.
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from lookalike.dupes import DEFAULT_K, DEFAULT_SIMILAR
from lookalike.server.app import ServerState
from lookalike.server.problems import ApiError

router = APIRouter(prefix="/api")
page_router = APIRouter()


@page_router.get("/duplicates", include_in_schema=False)
async def page() -> RedirectResponse:
    """The page's duplicates view (drawn by static/duplicates.js)."""
    return RedirectResponse("/?view=duplicates", status_code=307)


def _state(request: Request) -> ServerState:
    return request.app.state.lookalike


class _Cache:
    """The last answer, keyed by (catalog generation, options)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple | None = None
        self.value: dict | None = None


def _cache(request: Request) -> _Cache:
    cache = getattr(request.app.state, "duplicates_cache", None)
    if cache is None:
        cache = request.app.state.duplicates_cache = _Cache()
    return cache


def _find(state: ServerState, cache: _Cache, options: dict) -> dict:
    index = state.index
    with cache.lock:
        with index.lock:
            generation = index.catalog.generation
        key = (generation, tuple(sorted(options.items())))
        if cache.key != key:
            groups = index.duplicates(**options)
            cache.value = {"groups": [g.to_dict() for g in groups]}
            cache.key = key
        return cache.value


@router.get("/duplicates")
async def duplicates(
    request: Request,
    state: Annotated[ServerState, Depends(_state)],
    similar: Annotated[
        bool, Query(description="Also report similar shots (other shots of one scene).")
    ] = False,
    threshold: Annotated[
        float | None,
        Query(
            description=f"With similar: the cosine from which shots are similar "
            f"(default {DEFAULT_SIMILAR})."
        ),
    ] = None,
    k: Annotated[int, Query(description="Neighbours looked at per image.")] = DEFAULT_K,
) -> dict:
    """Groups of `exact` copies, `near` duplicates (verified: the same photo after edits) and,
    with `similar=true`, `similar` shots: `{"groups": [{"kind", "paths", "scores", "keep",
    "keep_reason", "ids", "keep_id", "members": [{"id", "path", "score", "evidence", "width",
    "height", "bytes"}]}]}`, as `lookalike dupes --json`. `paths[0]` is the suggested keeper;
    `scores` are cosines to it. Removing the others is `DELETE /api/images/{id}` (writable
    servers; files on disk are kept)."""
    if not 1 <= k <= 64:
        raise ApiError(422, f"k: must be between 1 and 64, got {k}")
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ApiError(422, f"threshold: must be a cosine in [-1, 1], got {threshold}")
    if threshold is not None and not similar:
        raise ApiError(422, "threshold: applies to similar=true only")
    options = {
        "similar": (threshold if threshold is not None else True) if similar else False,
        "k": k,
    }
    return await run_in_threadpool(_find, state, _cache(request), options)
