"""Browsing and the index's status: the routes behind the page's collection grid, folder filter
and status panel.

    GET  /api/images?offset=&limit=&folder=   the collection, paged, ordered by path
    GET  /api/folders                         folders holding images, with counts
    GET  /api/status                          count, indexed folders, last sync, rescan progress
    POST /api/rescan                          sync the indexed folders again (writable + token)

Paths are shown relative to the folder they were indexed from (`rel`); the folders a sync
covered and when it ended are recorded in the catalog (Catalog.record_sync).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from lookalike.errors import LookalikeError
from lookalike.labels import labels_from_pairs
from lookalike.server.problems import ApiError
from lookalike.server.routes import State, require_write

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api")

PAGE_DEFAULT = 60
PAGE_MAX = 200
BASELINE_SAMPLE = 300  # descriptors used to estimate the score of two unrelated images
BASELINE_PERCENTILE = 20
MAX_FOLDERS = 2000


# -- paths relative to the indexed folders ------------------------------------------------------


def relative_path(path: str, roots: list[str], uploads: str | None = None) -> str:
    """`path` relative to the indexed folder holding it (the longest matching root); files the
    server keeps for uploads as `uploads/NAME`; anything else unchanged."""
    if uploads and _is_under(path, uploads):
        return "uploads/" + path[len(uploads.rstrip(os.sep)) + 1 :]
    best = max((r for r in roots if _is_under(path, r)), key=len, default=None)
    if best is None:
        return path
    rel = path[len(best.rstrip(os.sep)) + 1 :]
    # With several indexed folders, name the folder too: "Holiday/beach.jpg".
    return f"{Path(best).name}/{rel}" if len(roots) > 1 else rel


def _is_under(path: str, root: str) -> bool:
    root = root.rstrip(os.sep)
    return path.startswith(root + os.sep)


# -- what the routes share ---------------------------------------------------------------------


@dataclass
class Rescan:
    """One rescan of the indexed folders, run in a thread; the page polls its progress."""

    roots: list[str]
    started: float = field(default_factory=time.time)
    phase: str = "starting"
    done: int = 0
    total: int = 0
    finished: float | None = None
    report: dict | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.finished is None

    def to_dict(self) -> dict:
        return {
            "running": self.running,
            "roots": self.roots,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "started": self.started,
            "finished": self.finished,
            "report": self.report,
            "error": self.error,
        }


@dataclass
class BrowseState:
    rescan: Rescan | None = None
    baseline: tuple[int, float | None] | None = None  # (image count when computed, score)
    folders: tuple[int, list[dict]] | None = None


def _browse(request: Request) -> BrowseState:
    state = getattr(request.app.state, "browse", None)
    if state is None:  # routes run on the event loop thread: no race here
        state = request.app.state.browse = BrowseState()
    return state


Browse = Annotated[BrowseState, Depends(_browse)]


def _uploads(state) -> str:  # noqa: ANN001 - ServerState
    return str(state.uploads_dir)


# -- the collection ------------------------------------------------------------------------------


@router.get("/images")
async def list_images(
    state: State,
    offset: Annotated[int, Query(ge=0, description="how many images to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="images per page")] = PAGE_DEFAULT,
    folder: Annotated[
        str | None, Query(description="only images under this folder (a `path` of /api/folders)")
    ] = None,
) -> dict:
    """The indexed images ordered by path, `limit` from `offset`, optionally under one folder.
    Returns `{"total", "offset", "limit", "images": [{"id", "path", "rel", "width", "height",
    "size", "tags", "thumbnail", "file"}]}`; `total` counts the images under the folder."""

    def read() -> dict:
        catalog = state.index.catalog
        with state.index.lock:
            records = catalog.page(offset, limit, folder)
            total = catalog.count_under(folder)
            roots, _ = catalog.sync_state()
            labels = catalog.labels([r.id for r in records])
        images = []
        for r in records:
            images.append(
                {
                    "id": r.id,
                    "path": r.path,
                    "rel": relative_path(r.path, roots, _uploads(state)),
                    "width": r.width,
                    "height": r.height,
                    "size": r.size,
                    "added_at": r.added_at,
                    "tags": [x.to_dict() for x in labels_from_pairs(labels.get(r.id, []))],
                    "thumbnail": f"/api/images/{r.id}/thumbnail",
                    "file": f"/api/images/{r.id}/file",
                }
            )
        return {
            "total": total,
            "offset": offset,
            "limit": limit,
            "folder": folder,
            "images": images,
        }

    return await run_in_threadpool(read)


@router.get("/folders")
async def list_folders(state: State, browse: Browse) -> dict:
    """Every folder holding indexed images (at any depth), with the number of images under it:
    `{"folders": [{"path", "rel", "count"}]}`, ordered by path. Pass a `path` as `folder` to
    /api/images to browse it."""

    def read() -> list[dict]:
        with state.index.lock:
            generation = state.index.catalog.generation
            cached = browse.folders
            if cached is not None and cached[0] == generation:
                return cached[1]
            roots, _ = state.index.catalog.sync_state()
            paths = list(state.index.catalog.iter_paths())
        folders = _folder_counts(paths, roots, _uploads(state))
        browse.folders = (generation, folders)
        return folders

    folders = await run_in_threadpool(read)
    return {"folders": folders[:MAX_FOLDERS], "truncated": len(folders) > MAX_FOLDERS}


def _folder_counts(paths: list[str], roots: list[str], uploads: str) -> list[dict]:
    """Count each image in its folder and every folder above it, up to its indexed root."""
    counts: dict[str, int] = {}
    tops = [r.rstrip(os.sep) for r in [*roots, uploads]]
    for path in paths:
        folder = os.path.dirname(path)
        top = max((t for t in tops if folder == t or _is_under(folder, t)), key=len, default=None)
        while True:
            counts[folder] = counts.get(folder, 0) + 1
            if top is None or folder == top or len(folder) <= len(top):
                break
            folder = os.path.dirname(folder)
    out = []
    for folder in sorted(counts):
        rel = relative_path(folder + os.sep + "x", roots, uploads)[:-2] or "."
        if folder.rstrip(os.sep) in (r.rstrip(os.sep) for r in roots) and len(roots) == 1:
            rel = "."
        out.append({"path": folder, "rel": rel, "count": counts[folder]})
    return out


# -- status and rescanning ---------------------------------------------------------------------


@router.get("/status")
async def index_status(state: State, browse: Browse) -> dict:
    """What the page's status panel shows: `{"count", "roots", "last_sync", "writable",
    "token_required", "score_baseline", "rescan"}`. `last_sync` is a Unix time (null before
    the first sync that recorded it); `score_baseline` is the typical score of two unrelated
    images of this collection (the page's match percentage starts there; see README);
    `rescan` is the progress of the current or last rescan, or null."""

    def read() -> dict:
        with state.index.lock:
            count = state.index.catalog.count()
            roots, last_sync = state.index.catalog.sync_state()
        return {
            "count": count,
            "roots": roots,
            "uploads": _uploads(state),
            "last_sync": last_sync,
            "writable": state.index.writable,
            "token_required": bool(state.settings.token),
            "score_baseline": _baseline(state, browse, count),
            "rescan": browse.rescan.to_dict() if browse.rescan else None,
        }

    return await run_in_threadpool(read)


def score_baseline(index) -> float | None:  # noqa: ANN001 - lookalike Index
    """What two unrelated images score in this collection (it depends on the descriptor and on
    whitening): the 20th percentile of the scores between different images of a sample. Not
    the median: in a collection of bursts or of one subject most pairs are related."""
    with index.lock:
        raw = index.catalog.sample_descriptors(BASELINE_SAMPLE)
    if len(raw) < 3:
        return None
    x = index.transform(raw)
    sims = x @ x.T
    off = sims[~np.eye(len(x), dtype=bool)]
    return round(float(np.percentile(off, BASELINE_PERCENTILE)), 4)


def _baseline(state, browse: BrowseState, count: int) -> float | None:  # noqa: ANN001
    cached = browse.baseline
    # Recomputed on first use and when the collection's size changed by more than 5 %.
    if cached is None or abs(count - cached[0]) > 0.05 * cached[0] or cached[1] is None:
        browse.baseline = (count, score_baseline(state.index))
    return browse.baseline[1]


@router.post("/rescan", status_code=202, dependencies=[Depends(require_write)])
async def rescan(state: State, browse: Browse) -> dict:
    """Sync the indexed folders again (new files added, changed ones re-embedded, deleted ones
    removed) in the background; poll GET /api/status for `rescan` progress. 409 while one
    runs; 409 when no folder has been recorded yet (index one with `lookalike index`)."""
    roots, _ = await run_in_threadpool(state.index.catalog.sync_state)
    # No await from the check to the assignment: routes share one event loop thread.
    if browse.rescan is not None and browse.rescan.running:
        raise ApiError(409, "a rescan is already running")
    if not roots:
        raise ApiError(
            409,
            "no indexed folders are recorded for this index: run "
            "'lookalike index FOLDER --index INDEX' once",
        )
    job = browse.rescan = Rescan(roots=roots)
    thread = threading.Thread(
        target=_run_rescan, args=(state, job), name="lookalike-rescan", daemon=True
    )
    thread.start()
    return job.to_dict()


def _run_rescan(state, job: Rescan) -> None:  # noqa: ANN001
    def progress(p) -> None:  # noqa: ANN001 - SyncProgress
        job.phase, job.done, job.total = p.phase, p.done, p.total

    try:
        missing = [r for r in job.roots if not Path(r).is_dir()]
        if missing:
            raise LookalikeError(f"indexed folder not found: {', '.join(missing)}")
        report = state.index.sync(job.roots, progress=progress)
        job.report = report.to_dict()
        job.phase = "done"
    except LookalikeError as exc:
        job.error = str(exc)
        job.phase = "failed"
    except Exception as exc:  # a thread has no caller to raise to: record and log it
        log.exception("rescan failed")
        job.error = f"{type(exc).__name__}: {exc}"
        job.phase = "failed"
    finally:
        job.finished = time.time()
