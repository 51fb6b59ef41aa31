"""Uploaded images: read within the size limit, identify by content (never by file name), keep
in a temporary file or in the index's uploads folder under a content-hash name."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import UploadFile
from PIL import Image, UnidentifiedImageError

from lookalike.server.problems import ApiError

if TYPE_CHECKING:
    from lookalike.engine import Index

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
INCOMING_NAME = ".uploads-incoming"
EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "PPM": ".ppm",
    "MPO": ".jpg",
}


@dataclass(frozen=True, slots=True)
class Upload:
    """An upload saved to `path` (a temporary file until `keep` moves it)."""

    path: Path
    sha256: str
    format: str
    width: int
    height: int
    filename: str

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


async def receive_upload(
    file: UploadFile, *, max_bytes: int, max_pixels: int, tmp_dir: Path | None = None
) -> Upload:
    """Copy `file` to a temporary file (413 past `max_bytes`), then check that it is an image
    of a format Pillow reads (415 otherwise) with at most `max_pixels` pixels (413)."""
    from starlette.concurrency import run_in_threadpool

    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".bin", dir=tmp_dir)
    path = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await file.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ApiError(413, f"upload too large: over the limit of {max_bytes:,} bytes")
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise ApiError(422, "upload is an empty file")
        fmt, width, height = await run_in_threadpool(probe, path, max_pixels)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Upload(path, digest.hexdigest(), fmt, width, height, file.filename or "")


def probe(path: Path, max_pixels: int) -> tuple[str, int, int]:
    """Format and size from the file's header; raises ApiError 415 / 413."""
    try:
        with Image.open(path) as im:
            fmt = im.format or ""
            width, height = im.size
    except UnidentifiedImageError:
        raise ApiError(415, "upload is not an image (cannot identify format)") from None
    except Image.DecompressionBombError as exc:
        raise ApiError(413, f"upload image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ApiError(422, f"upload: truncated or corrupt image ({exc})") from None
    if width * height > max_pixels:
        raise ApiError(
            413,
            f"upload image too large: {width}x{height} pixels exceeds the limit of "
            f"{max_pixels:,} pixels",
        )
    return fmt, width, height


def upload_target(upload: Upload, folder: Path) -> Path:
    """Where an upload is kept: its content-hash name in `folder` (one file per content)."""
    return folder / f"{upload.sha256[:32]}{EXTENSIONS.get(upload.format, '.img')}"


def incoming_dir(folder: Path) -> Path:
    """Where uploads are received before they are kept or discarded: a hidden folder next to
    the uploads folder (same file system, so keeping is a rename), emptied when a writable
    server starts."""
    incoming = folder.parent / INCOMING_NAME
    incoming.mkdir(parents=True, exist_ok=True)
    return incoming


def keep(upload: Upload, folder: Path) -> Path:
    """Move an upload into `folder` under its content-hash name, durably (the file's data and
    the folder entry are synced before the catalog records it); an identical file already
    there is reused."""
    folder.mkdir(parents=True, exist_ok=True)
    target = upload_target(upload, folder)
    if target.exists():
        upload.discard()
        return target
    with open(upload.path, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(upload.path, target)
    _fsync_dir(folder)
    return target


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def reconcile(index: Index, folder: Path) -> tuple[int, int]:
    """Make the catalog and the uploads folder agree after a crash (kill -9, power loss)
    between a file being kept and its record committed, or a record removed and its file
    unlinked: uploaded files no record points to are deleted, and records of uploads whose
    file is gone are removed. Also empties the incoming folder. Returns (files deleted,
    records removed)."""
    import shutil

    shutil.rmtree(folder.parent / INCOMING_NAME, ignore_errors=True)
    if not folder.is_dir():
        return 0, 0
    recorded = index.catalog.ids_under(str(folder))
    files = {str(p) for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
    orphans = sorted(files - recorded.keys())
    for path in orphans:
        Path(path).unlink(missing_ok=True)
    missing = [image_id for path, image_id in recorded.items() if path not in files]
    if missing:
        index.remove(missing)
    if orphans or missing:
        log.warning(
            "uploads folder %s: deleted %d file(s) no record points to, removed %d record(s) "
            "whose file was gone (an interrupted upload or delete)",
            folder,
            len(orphans),
            len(missing),
        )
    return len(orphans), len(missing)
